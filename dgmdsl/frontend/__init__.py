"""The front end: source -> parse tree -> AST (with spans) -> checked model. Never imports torch."""
from .check import check_program, check_source
from .diagnostics import DgmError, Diagnostic
from .parser import parse

__all__ = ["DgmError", "Diagnostic", "check_program", "check_source", "parse"]
