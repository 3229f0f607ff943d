"""The `dgm` command line. Front-end commands never import torch; the run commands
(fit, sample, eval, query, data) import the runtime only when called."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .api import load
from .frontend.diagnostics import DgmError

__all__ = ["main", "build_parser"]


class UserError(Exception):
    """A mistake in arguments, data or files: printed as `error: ...` (after `where`, e.g.
    `data.csv: variable 'x', row 3`, when given) with a hint, exit 1."""

    def __init__(self, message: str, hint: str | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        self.where = where

    def render(self) -> str:
        text = f"{self.where}: error: {self}" if self.where else f"error: {self}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


def _load_models(path: str, model: str | None):
    program = load(path)
    if model is None:
        return program.models
    return [program[model]]


def cmd_check(args) -> int:
    failed = 0
    for path in args.files:
        try:
            program = load(path)
        except DgmError as err:
            print(err.render(), file=sys.stderr)
            failed += 1
            continue
        names = ", ".join(program)
        print(f"{path}: ok ({len(program)} model{'s' if len(program) != 1 else ''}: {names})")
    return 1 if failed else 0


def cmd_explain(args) -> int:
    status = 0
    for path in args.files:
        try:
            models = _load_models(path, args.model)
        except DgmError as err:
            print(err.render(), file=sys.stderr)
            status = 1
            continue
        for model in models:
            print(model.explain().text())
    return status


def cmd_graph(args) -> int:
    from .ir.export import FORMATS

    models = _load_models(args.file, args.model)
    if len(models) > 1 and args.model is None:
        names = ", ".join(m.name for m in models)
        raise UserError(f"{args.file} holds several models ({names})", "choose one with --model NAME")
    sys.stdout.write(FORMATS[args.format](models[0].graph))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dgm", description="Deep generative models from .dgm specs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="parse and check spec files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("explain", help="say which inference each model gets, and why")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", metavar="NAME")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("graph", help="print a model's graph")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--model", metavar="NAME")
    p.add_argument("--format", choices=["dot", "json", "graphml"], default="dot")
    p.set_defaults(func=cmd_graph)

    try:
        from .cli_run import add_run_commands
    except ImportError:  # pragma: no cover - the runtime is part of the package
        add_run_commands = None
    if add_run_commands is not None:
        add_run_commands(sub, UserError)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DgmError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except UserError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a traceback is a bug: say so plainly, show it only on request
        if os.environ.get("DGM_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc}\n  this is a bug in dgmdsl; "
              "rerun with DGM_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
