"""Resolve the answers to the questions from flags, a file, the existing site,
prompts and defaults (in that order)."""

import sys
from pathlib import Path

import yaml

from .errors import MeshsteadError
from .questions import BY_NAME, QUESTIONS, parse_answer


def parse_set_flags(pairs: list[str]) -> dict:
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MeshsteadError("--set", f"{pair!r} is not KEY=VALUE")
        result[key.strip()] = value
    return result


def load_answers_file(path: str | None) -> dict:
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise MeshsteadError("--answers", f"cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MeshsteadError("--answers", f"{path} is not a text file; expected YAML of question: answer") from None
    except yaml.YAMLError as exc:
        raise MeshsteadError("--answers", f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MeshsteadError("--answers", f"{path} must hold a mapping of question: answer")
    return data


def check_known(given: dict, source: str, extra=("nodes",)) -> None:
    for key in given:
        if key not in BY_NAME and key not in extra:
            raise MeshsteadError(key, f"unknown question in {source}; expected one of: "
                                 f"{', '.join(list(BY_NAME) + list(extra))}")


def resolve(flags: dict, from_file: dict, previous: dict, *, interactive: bool, asker=None,
            context: dict | None = None) -> dict:
    """Answer every question or raise naming the first one that cannot be."""
    answers: dict = dict(context or {})
    for question in QUESTIONS:
        if not question.when(answers):
            continue
        name = question.name
        try:
            answers[name] = _answer(question, flags, from_file, previous, answers, interactive, asker)
        except ValueError as exc:
            raise MeshsteadError(name, str(exc)) from None
    return {k: v for k, v in answers.items() if not k.startswith("_")}


# Given empty, these take their default (a generated passphrase); other
# secrets given empty are refused like any other bad answer.
EMPTY_MEANS_DEFAULT = ("mesh_passphrase",)


def _answer(question, flags, from_file, previous, answers, interactive, asker):
    name = question.name
    if name in flags or name in from_file:
        raw = flags[name] if name in flags else from_file[name]
        if raw in ("", None) and question.optional:
            return None
        if raw in ("", None) and name in EMPTY_MEANS_DEFAULT:
            return question.default(answers)
        return parse_answer(question, raw, answers)
    if name in previous:
        # A kept answer that depends on others (the channel on the country
        # and band) is checked again against their new values.
        return parse_answer(question, previous[name], answers) if question.depends else previous[name]
    if interactive:
        return asker(question, answers)
    value = question.default(answers) if question.default else None
    if value is None and not question.optional:
        raise MeshsteadError(name, "required, and there is no terminal to ask; supply it with "
                             f"--set {name}=VALUE or in an --answers file")
    return None if value is None else parse_answer(question, value, answers)


def has_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
