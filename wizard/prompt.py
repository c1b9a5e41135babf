"""The only module that talks to the prompt library."""

import questionary

from .errors import MeshsteadError
from .questions import Question, parse_answer


def ask(question: Question, answers: dict):
    default = question.default(answers) if question.default else None

    def check(text):
        if text in ("", None) and (question.optional or question.secret):
            return True
        try:
            parse_answer(question, text, answers)
        except ValueError as exc:
            return str(exc)
        return True

    message = f"{question.name}:"
    if question.kind == "select":
        raw = questionary.select(message, choices=list(question.choices), default=str(default),
                                 instruction=question.help).ask()
    elif question.kind == "checkbox":
        chosen = set(default or [])
        raw = questionary.checkbox(message, choices=[questionary.Choice(c, checked=c in chosen)
                                                     for c in question.choices],
                                   instruction=question.help,
                                   validate=lambda v: check(v) if v or question.optional else check(v)).ask()
    elif question.kind == "password":
        raw = questionary.password(f"{message} ({question.help})", validate=check).ask()
        if raw == "":
            return None if question.optional else parse_answer(question, default, answers)
    else:
        # The default is shown, not pre-filled: typing replaces it (a pre-filled
        # "00" made "KE" into "00KE"); Enter on an empty line takes it.
        shown = "" if default is None else f" [{default}]"
        raw = questionary.text(f"{message} ({question.help}){shown}",
                               validate=lambda text: check(text if text or default is None else default)).ask()
        if raw == "" and default is not None:
            raw = default
    if raw is None:  # Ctrl-C / Ctrl-D
        raise MeshsteadError(question.name, "no answer given (interrupted); nothing was written")
    if raw == "" and question.optional:
        return None
    return parse_answer(question, raw, answers)
