"""The Python surface: `load`, `loads`, `Program`, `Model`. Importing this never imports torch;
training, sampling and evaluation import the runtime on first use."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .frontend.check import check_source
from .frontend.checked import CheckedModel
from .frontend.diagnostics import DgmError, Diagnostic
from .frontend.spans import NO_SPAN, Source

__all__ = ["Explanation", "Model", "Program", "load", "loads"]


@dataclass(frozen=True)
class Explanation:
    model: str
    method: str
    family: str
    rule: str
    reasons: list[str]
    alternatives: list[str]
    evaluation: str

    def text(self) -> str:
        lines = [f"model {self.model}: {self.method}"]
        lines += [f"    {r}" for r in self.reasons]
        lines.append(f"    family: {self.family}")
        alts = ", ".join(self.alternatives) if self.alternatives else "none"
        lines.append(f"    also valid: {alts}")
        lines.append(f"    evaluation: {self.evaluation}")
        return "\n".join(lines)


class Model:
    """One checked model of a program; its graph is built on first access."""

    def __init__(self, checked: CheckedModel, program: "Program") -> None:
        self.checked = checked
        self.program = program
        self._ir = None

    @property
    def name(self) -> str:
        return self.checked.name

    @property
    def ir(self):
        if self._ir is None:
            from .ir import build_ir
            self._ir = build_ir(self.checked)
        return self._ir

    @property
    def graph(self):
        return self.ir.graph

    @property
    def method(self) -> str:
        return self.checked.method.name

    def explain(self) -> Explanation:
        m = self.checked.method
        return Explanation(self.name, m.name, self.checked.family, m.rule, list(m.reasons),
                           list(m.alternatives), m.evaluation)

    def fit(self, **options):
        """Train; returns a fitted run (see dgmdsl.runtime.fitted)."""
        from .runtime.api import fit_model
        return fit_model(self, **options)

    def query(self, query: str, **options):
        from .runtime.api import query_model
        return query_model(self, query, **options)

    def compile(self, device: str = "cpu"):
        """The family backend's compiled model (torch), untrained."""
        from .runtime.api import compile_model
        return compile_model(self, device=device)

    @property
    def pyro_model(self):
        return self.compile().pyro_model

    @property
    def pyro_guide(self):
        return self.compile().pyro_guide

    def __repr__(self) -> str:
        return f"<dgmdsl.Model {self.name}: {self.checked.family}, {self.method}>"


class Program(Mapping):
    """The checked models of one source file, by name."""

    def __init__(self, checked_program, path: Path | None = None) -> None:
        self.source: Source = checked_program.source
        self.path = path
        self._models = {name: Model(cm, self) for name, cm in checked_program.models.items()}

    def __getitem__(self, name: str) -> Model:
        try:
            return self._models[name]
        except KeyError:
            from .frontend.errors import unknown
            diag = unknown(NO_SPAN, "model", name, self._models).with_filename(self.source.filename)
            raise DgmError([diag], self.source) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    @property
    def models(self) -> list[Model]:
        return list(self._models.values())

    def __repr__(self) -> str:
        return f"<dgmdsl.Program {self.source.filename}: {', '.join(self._models)}>"


def loads(text: str, filename: str = "<input>") -> Program:
    """Parse and check spec text; raises DgmError (and nothing else) on any user error."""
    try:
        return Program(check_source(text, filename))
    except DgmError:
        raise
    except RecursionError:
        diag = Diagnostic(NO_SPAN, "the spec is nested too deeply to check", filename=filename)
        raise DgmError([diag], Source(filename, text)) from None


def load(path) -> Program:
    """Read, parse and check a .dgm file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DgmError([Diagnostic(NO_SPAN, f"cannot read {p}: {exc.strerror or exc}", filename=str(p))]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        from .frontend.spans import Span
        diag = Diagnostic(Span(line, col, line, col + 1), "the file is not valid UTF-8", filename=str(p))
        raise DgmError([diag]) from None
    program = loads(text, str(path))
    program.path = p
    return program
