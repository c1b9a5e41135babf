"""The one exception the lab raises: its message is a single line for the CLI."""


class LabError(RuntimeError):
    """A lab operation failed; str(err) is one line that says what to do."""
