"""The error catalogue: every semantic error is one constructor here, span first."""
from __future__ import annotations

import difflib
from typing import Iterable

from .diagnostics import Diagnostic
from .spans import Span

__all__ = [
    "did_you_mean", "unknown", "undefined_name", "duplicate_declaration", "defined_twice",
    "undeclared_target", "latent_undefined", "support_mismatch", "table_parent_not_discrete",
    "shape_mismatch", "cycle", "guide_defines_non_latent", "bad_type", "bad_argument",
    "missing_argument", "bad_option", "method_not_valid", "non_affine_drift", "sde_error",
    "unsupported", "bad_value",
]


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(set(choices)), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f"did you mean '{close[0]}'?" if close else None


def _known(choices: Iterable[str], limit: int = 12) -> str:
    items = sorted(set(choices))
    shown = ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
    return f"known: {shown}"


def unknown(span: Span, what: str, name: str, choices: Iterable[str]) -> Diagnostic:
    choices = list(choices)
    suggestion = did_you_mean(name, choices)
    message = f"unknown {what} '{name}'" + (f"; {suggestion}" if suggestion else "")
    return Diagnostic(span, message, None if suggestion else _known(choices))


def undefined_name(span: Span, name: str, known: Iterable[str]) -> Diagnostic:
    suggestion = did_you_mean(name, known)
    message = f"undefined name '{name}'" + (f"; {suggestion}" if suggestion else "")
    return Diagnostic(span, message, None if suggestion else "declare it with data, latent, param, net or flow")


def duplicate_declaration(span: Span, name: str, first: Span) -> Diagnostic:
    return Diagnostic(span, f"'{name}' is declared twice (first at line {first.line})",
                      "rename one of them")


def defined_twice(span: Span, name: str, first: Span) -> Diagnostic:
    return Diagnostic(span, f"variable '{name}' is defined twice (first at line {first.line})",
                      "a variable is defined by exactly one '~' or '=' statement")


def undeclared_target(span: Span, name: str, known: Iterable[str]) -> Diagnostic:
    suggestion = did_you_mean(name, known)
    return Diagnostic(span, f"'{name}' is not declared" + (f"; {suggestion}" if suggestion else ""),
                      f"declare it first, e.g. 'latent {name} : real'")


def latent_undefined(span: Span, name: str) -> Diagnostic:
    return Diagnostic(span, f"latent '{name}' has no distribution",
                      f"define it with '{name} ~ ...' or '{name} = ...'")


def support_mismatch(span: Span, var: str, type_text: str, dist: str, support_word: str) -> Diagnostic:
    return Diagnostic(span, f"{var} is {type_text} but {dist} is {support_word}",
                      "choose a distribution whose support fits the declared type")


def table_parent_not_discrete(span: Span, parent: str, type_text: str) -> Diagnostic:
    return Diagnostic(span, f"table: parent '{parent}' is {type_text}, but table parents must be "
                            "binary, cat or ordinal", "use linear(...) or a net for continuous parents")


def shape_mismatch(span: Span, what: str, left: tuple, right: tuple, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span, f"shape mismatch: {what}: {_shape(left)} vs {_shape(right)}", hint)


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def cycle(span: Span, names: list[str]) -> Diagnostic:
    loop = " -> ".join(names + names[:1])
    return Diagnostic(span, f"cycle in the model: {loop}", "statements must form a directed acyclic graph")


def guide_defines_non_latent(span: Span, name: str, kind: str) -> Diagnostic:
    return Diagnostic(span, f"guide defines {kind} '{name}'; only latents may be defined in a guide",
                      "the guide states q(latents | data)")


def bad_type(span: Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span, message, hint)


def bad_argument(span: Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span, message, hint)


def missing_argument(span: Span, what: str, arg: str) -> Diagnostic:
    return Diagnostic(span, f"{what} needs '{arg}'", f"write {what}({arg} = ...)")


def bad_option(span: Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span, message, hint)


def method_not_valid(span: Span, method: str, valid: list[str], why: str) -> Diagnostic:
    return Diagnostic(span, f"method '{method}' is not valid for this model ({why})",
                      "valid methods here: " + ", ".join(valid))


def non_affine_drift(span: Span, state: str, why: str) -> Diagnostic:
    return Diagnostic(span, f"the drift of d{state} is not affine in {state} ({why}); denoising score "
                            "matching needs a Gaussian perturbation kernel",
                      f"write the drift as a(t) * {state} + b(t)")


def sde_error(span: Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span, message, hint)


def unsupported(span: Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span, message, hint)


def bad_value(span: Span, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span, message, hint)
