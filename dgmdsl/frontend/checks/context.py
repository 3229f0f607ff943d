"""State shared by the checks of one model: declarations found so far and the diagnostics."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import ast as A
from ..checked import FlowInfo, NetInfo, SdeInfo, VarInfo
from ..diagnostics import Diagnostic
from ..spans import Source

__all__ = ["Context"]


@dataclass
class Context:
    model: A.Model
    source: Source
    model_names: set[str]
    vars: dict[str, VarInfo] = field(default_factory=dict)
    nets: dict[str, NetInfo] = field(default_factory=dict)
    flows: dict[str, FlowInfo] = field(default_factory=dict)
    sdes: dict[str, SdeInfo] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, diag: Diagnostic) -> None:
        self.diagnostics.append(diag.with_filename(self.source.filename))

    def extend(self, diags) -> None:
        for d in diags:
            self.error(d)

    @property
    def declared(self) -> set[str]:
        return set(self.vars) | set(self.nets) | set(self.flows) | set(self.sdes)

    @property
    def has_critic(self) -> bool:
        return any(n.kind == "critic" for n in self.nets.values())

    def statements(self) -> list[A.SampleStmt | A.AssignStmt]:
        return list(self.model.of_type(A.SampleStmt, A.AssignStmt))

    def guide_statements(self) -> list[A.SampleStmt | A.AssignStmt]:
        return [s for g in self.model.of_type(A.Guide) for s in g.stmts]
