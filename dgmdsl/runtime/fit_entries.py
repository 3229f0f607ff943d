"""Command-line values of fit-block entries (`--data moons(n = 100)`, `--lr-schedule
cosine`), checked by the front end exactly as the same entry written in a spec."""
from __future__ import annotations

__all__ = ["InvalidFitEntry", "checked_fit_entry"]


class InvalidFitEntry(ValueError):
    """The front end rejected the entry; the message is its first diagnostic."""


def checked_fit_entry(key: str, text: str, origin: str):
    """The checked value of `fit { key = text }`; `origin` names the argument in diagnostics."""
    from ..api import loads
    from ..frontend.diagnostics import DgmError

    source = f"model _Entry {{\n data _x : real\n _x ~ Normal(0, 1)\n fit {{ {key} = {text} }}\n}}\n"
    try:
        program = loads(source, origin)
    except DgmError as exc:
        raise InvalidFitEntry(exc.diagnostics[0].message if exc.diagnostics else str(exc)) from None
    return program.models[0].checked.fit[key]
