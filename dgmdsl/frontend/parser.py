"""Source text -> AST. Lark LALR parser; syntax errors become located diagnostics."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast as A
from .diagnostics import DgmError, Diagnostic
from .spans import Source, Span

__all__ = ["parse", "grammar_path", "MAX_NESTING"]

# Deeper brackets or longer operator chains are a user error, not a RecursionError:
# both bound the depth of the tree that the (recursive) transformer and checks walk.
MAX_NESTING = 32
MAX_OPERATORS = 100
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "CIRCUMFLEX"}


def grammar_path() -> Path:
    """The grammar ships as package data (dgmdsl/grammars); a source checkout has ../grammars."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "grammars" / "dgm.lark", here.parent / "grammars" / "dgm.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("dgm.lark not found next to the dgmdsl package")


class _TooDeep(Exception):
    def __init__(self, token: Token, message: str) -> None:
        self.token = token
        self.message = message


class _NewlinePostLexer:
    """Drops newlines inside () and [] and after a comma; bounds nesting depth."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        operators = 0
        prev = None
        for tok in stream:
            if tok.type == "_NL":
                if depth > 0 or (prev is not None and prev.type == "COMMA"):
                    continue
                operators = 0
            elif tok.type in ("LPAR", "LSQB"):
                depth += 1
                if depth > MAX_NESTING:
                    raise _TooDeep(tok, f"brackets nested more than {MAX_NESTING} deep")
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type in _OPERATORS:
                operators += 1
                if operators > MAX_OPERATORS:
                    raise _TooDeep(tok, f"more than {MAX_OPERATORS} operators in one statement")
            prev = tok
            yield tok


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(grammar_path().read_text(), parser="lalr", propagate_positions=True,
                postlex=_NewlinePostLexer(), maybe_placeholders=True, cache=True)


def _span(meta) -> Span:
    return Span.from_meta(meta)


def _num(tok: Token) -> A.Num:
    return A.Num(float(tok), str(tok), span=Span.from_token(tok))


@v_args(meta=True)
class _ToAst(Transformer):
    """Builds AST nodes; no checking here (Lark would wrap our exceptions)."""

    def start(self, meta, models):
        return A.Program(tuple(models), span=_span(meta))

    def model(self, meta, children):
        name, *items = children
        return A.Model(str(name), tuple(items), name_span=Span.from_token(name), span=_span(meta))

    # declarations
    def var_kind(self, meta, children):
        return str(children[0])

    def var_decl(self, meta, children):
        kind, name, typ = children
        return A.VarDecl(kind, str(name), typ, name_span=Span.from_token(name), span=_span(meta))

    def type_expr(self, meta, children):
        name, arg, shape = children
        return A.TypeExpr(str(name), arg, tuple(shape or ()), span=_span(meta))

    def type_arg(self, meta, children):
        return _num(children[0])

    def shape(self, meta, children):
        return [_num(t) for t in children]

    def net_decl(self, meta, children):
        name, ctor = children
        return A.NetDecl("net", str(name), None, ctor, name_span=Span.from_token(name), span=_span(meta))

    def critic_decl(self, meta, children):
        name, inputs, ctor = children
        return A.NetDecl("critic", str(name), inputs, ctor, name_span=Span.from_token(name),
                         span=_span(meta))

    def critic_inputs(self, meta, children):
        return tuple(A.Name(str(t), span=Span.from_token(t)) for t in children)

    def flow_decl(self, meta, children):
        name, body = children
        return A.FlowDecl(str(name), body, name_span=Span.from_token(name), span=_span(meta))

    def flow_body(self, meta, children):
        return tuple(children)

    def layer(self, meta, children):
        name, args = children
        return A.Layer(str(name), tuple(args or ()), span=_span(meta))

    def repeat(self, meta, children):
        count, body = children
        return A.Repeat(_num(count), body, span=_span(meta))

    def sde_decl(self, meta, children):
        name, *defs = children
        return A.SdeDecl(str(name), tuple(defs), name_span=Span.from_token(name), span=_span(meta))

    def sde_def(self, meta, children):
        name, params, expr = children
        return A.SdeDef(str(name), params, expr, name_span=Span.from_token(name), span=_span(meta))

    def sde_params(self, meta, children):
        return tuple(str(t) for t in children)

    # statements and blocks
    def sample_stmt(self, meta, children):
        name, expr = children
        return A.SampleStmt(str(name), expr, target_span=Span.from_token(name), span=_span(meta))

    def assign_stmt(self, meta, children):
        name, expr = children
        return A.AssignStmt(str(name), expr, target_span=Span.from_token(name), span=_span(meta))

    def guide_block(self, meta, children):
        return A.Guide(tuple(children), span=_span(meta))

    def fit_block(self, meta, children):
        return A.OptionBlock("fit", children[0], span=_span(meta))

    def sample_block(self, meta, children):
        return A.OptionBlock("sample", children[0], span=_span(meta))

    def option_block(self, meta, children):
        return tuple(children)

    def option_key(self, meta, children):
        return children[0]

    def option(self, meta, children):
        key, value = children
        return A.Option(str(key), value, key_span=Span.from_token(key), span=_span(meta))

    # expressions
    def _binop(op):  # noqa: N805 - a small factory for the four binary rules
        def rule(self, meta, children):
            return A.BinOp(op, children[0], children[1], span=_span(meta))
        return rule

    add, sub, mul, div, pow = _binop("+"), _binop("-"), _binop("*"), _binop("/"), _binop("^")

    def neg(self, meta, children):
        return A.Neg(children[0], span=_span(meta))

    def call(self, meta, children):
        func, args = children
        return A.Call(func, args, span=_span(meta))

    def call_args(self, meta, children):
        return tuple(c if isinstance(c, A.Arg) else A.Arg(None, c, span=c.span)
                     for c in children if c is not None)

    def kwarg(self, meta, children):
        name, value = children
        return A.Arg(str(name), value, span=_span(meta))

    def index(self, meta, children):
        base, *items = children
        return A.Index(base, tuple(items), span=_span(meta))

    def slice(self, meta, children):
        return A.Slice(children[0], children[1], span=_span(meta))

    def number(self, meta, children):
        return _num(children[0])

    def string(self, meta, children):
        tok = children[0]
        return A.Str(str(tok)[1:-1], span=Span.from_token(tok))

    def name(self, meta, children):
        tok = children[0]
        return A.Name(str(tok), span=Span.from_token(tok))

    def bracket(self, meta, children):
        return A.Bracket(tuple(c for c in children if c is not None), span=_span(meta))


_TOKEN_WORDS = {
    "_NL": "end of line", "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COMMA": "','", "EQUAL": "'='", "TILDE": "'~'", "COLON": "':'", "SEMICOLON": "';'",
    "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "$END": "end of file",
}


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token_type]
    if token_type.isupper() and not token_type.startswith("_"):
        return f"'{token_type.lower()}'"
    return token_type


def _expected(exc: UnexpectedInput) -> str:
    names = sorted({_describe(t) for t in getattr(exc, "expected", ()) or () if not t.startswith("__")})
    if not names:
        return ""
    if len(names) > 6:
        names = names[:6] + ["..."]
    return "expected " + ", ".join(names)


def _syntax_diagnostic(exc: Exception, source: Source) -> Diagnostic:
    if isinstance(exc, _TooDeep):
        tok = exc.token
        return Diagnostic(Span.from_token(tok), exc.message,
                          "split the expression into smaller named pieces", filename=source.filename)
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END"):
        return Diagnostic(source.end_span(), "unexpected end of file",
                          "a block or bracket is not closed", filename=source.filename)
    if isinstance(exc, UnexpectedCharacters):
        ch = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else "?"
        span = Span(exc.line, exc.column, exc.line, exc.column + 1, exc.pos_in_stream, exc.pos_in_stream + 1)
        hint = "strings use double quotes" if ch == "'" else None
        return Diagnostic(span, f"unexpected character {ch!r}", hint, filename=source.filename)
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    span = Span.from_token(tok) if tok.line is not None else source.end_span()
    what = "end of line" if tok.type == "_NL" else repr(str(tok))
    hint = _expected(exc) or None
    if tok.type == "_NL" and "'}'" not in (hint or ""):
        hint = (hint + "; " if hint else "") + "a statement may continue on the next line only inside () or [] or after a comma"
    return Diagnostic(span, f"syntax error: unexpected {what}", hint, filename=source.filename)


def parse(text: str, filename: str = "<input>") -> A.Program:
    """Parse a whole file; raises DgmError on a syntax error (the first one)."""
    source = Source(filename, text)
    try:
        tree = _parser().parse(text)
    except (UnexpectedInput, _TooDeep) as exc:
        raise DgmError([_syntax_diagnostic(exc, source)], source) from None
    return _ToAst().transform(tree)
