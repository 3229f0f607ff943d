"""Source positions. Every AST node and every diagnostic carries a `Span`."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Span", "Source", "NO_SPAN"]


@dataclass(frozen=True)
class Span:
    """1-based line/column start and end (end exclusive), plus character offsets."""

    line: int
    col: int
    end_line: int
    end_col: int
    start: int = 0
    end: int = 0

    @staticmethod
    def from_meta(meta) -> "Span":
        # Lark's meta is converted here, once; nothing past the parser sees Lark objects.
        if getattr(meta, "empty", False):
            return NO_SPAN
        return Span(meta.line, meta.column, meta.end_line, meta.end_column,
                    meta.start_pos, meta.end_pos)

    @staticmethod
    def from_token(tok) -> "Span":
        return Span(tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos)

    def to(self, other: "Span") -> "Span":
        """The span covering self through other."""
        if other is NO_SPAN:
            return self
        if self is NO_SPAN:
            return other
        return Span(self.line, self.col, other.end_line, other.end_col, self.start, other.end)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.line, self.col, self.end_line, self.end_col)


NO_SPAN = Span(0, 0, 0, 0)


@dataclass(frozen=True)
class Source:
    """A file's name and text, with line lookup for rendering carets."""

    filename: str
    text: str

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return ""

    def end_span(self) -> Span:
        """A one-character span at the end of the text (for errors at end of file)."""
        lines = self.text.splitlines() or [""]
        if self.text.endswith(("\n", "\r")):
            return Span(len(lines) + 1, 1, len(lines) + 1, 2, len(self.text), len(self.text))
        last = lines[-1]
        return Span(len(lines), len(last) + 1, len(lines), len(last) + 2, len(self.text), len(self.text))
