"""Diagnostics, the one user-error exception, and their rendering."""
from __future__ import annotations

from dataclasses import dataclass, field

from .spans import NO_SPAN, Source, Span

__all__ = ["Diagnostic", "DgmError", "MAX_ERRORS", "render", "render_all"]

MAX_ERRORS = 20


@dataclass(frozen=True)
class Diagnostic:
    span: Span
    message: str
    hint: str | None = None
    severity: str = "error"
    filename: str = "<input>"

    def location(self) -> str:
        if self.span is NO_SPAN or self.span.line == 0:
            return self.filename
        return f"{self.filename}:{self.span.line}:{self.span.col}"

    def with_filename(self, filename: str) -> "Diagnostic":
        return Diagnostic(self.span, self.message, self.hint, self.severity, filename)


class DgmError(Exception):
    """Every user error in a spec: carries all diagnostics, sorted by position."""

    def __init__(self, diagnostics: list[Diagnostic], source: Source | None = None) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.span.line, d.span.col))[:MAX_ERRORS]
        self.truncated = max(0, len(diagnostics) - MAX_ERRORS)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return render_all(self.diagnostics, self.source, self.truncated)


def render(diag: Diagnostic, source: Source | None) -> str:
    """`file:line:col: error: message`, the source line, a caret under the span, a hint."""
    out = [f"{diag.location()}: {diag.severity}: {diag.message}"]
    span = diag.span
    if source is not None and span is not NO_SPAN and span.line > 0:
        text = source.line_text(span.line).replace("\t", " ")
        out.append(f"    {text}")
        width = (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
        width = max(1, min(width, max(1, len(text) - span.col + 1)))
        out.append("    " + " " * (span.col - 1) + "^" + "~" * (width - 1))
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    return "\n".join(out)


def render_all(diags: list[Diagnostic], source: Source | None, truncated: int = 0) -> str:
    text = "\n".join(render(d, source) for d in diags)
    if truncated:
        text += f"\n... and {truncated} more error(s) not shown"
    return text
