"""User-facing errors: one line naming the field and what was expected."""


class MeshsteadError(Exception):
    """An error the user can fix; printed as one line, never as a traceback."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
