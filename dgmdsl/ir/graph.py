"""Checked model -> graph IR: a networkx.DiGraph with one node per variable, net, critic
and flow, and one edge per dependency.

Edge attribute `kind` is one of stochastic / deterministic / guide / net; where a model
edge and a guide edge join the same pair in the same direction the edge carries both,
joined with '+' in that order (e.g. 'stochastic+guide'); `edge_kinds` splits it.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..frontend import ast as A
from ..frontend.checked import CheckedModel

__all__ = ["ModelIR", "build_graph", "build_ir", "edge_kinds"]

_KIND_ORDER = ("stochastic", "deterministic", "net", "guide")


@dataclass
class ModelIR:
    """What every backend receives: the checked model and its graph."""

    model: CheckedModel
    graph: nx.DiGraph

    @property
    def name(self) -> str:
        return self.model.name

    def topological_vars(self) -> list[str]:
        """Variables in an order where parents come first (model edges only)."""
        sub = nx.DiGraph()
        sub.add_nodes_from(self.model.vars)
        for u, v, kind in self.graph.edges(data="kind"):
            if u in self.model.vars and v in self.model.vars and set(edge_kinds(kind)) & {"stochastic", "deterministic"}:
                sub.add_edge(u, v)
        return list(nx.lexicographical_topological_sort(sub, key=self._decl_order))

    def _decl_order(self, name: str) -> int:
        return list(self.model.vars).index(name)


def edge_kinds(kind: str) -> tuple[str, ...]:
    return tuple(kind.split("+")) if kind else ()


def _add_edge(graph: nx.DiGraph, u: str, v: str, kind: str) -> None:
    if graph.has_edge(u, v):
        kinds = set(edge_kinds(graph.edges[u, v]["kind"])) | {kind}
        graph.edges[u, v]["kind"] = "+".join(k for k in _KIND_ORDER if k in kinds)
    else:
        graph.add_edge(u, v, kind=kind)


def _nets_used(expr, nets) -> set[str]:
    used = set()
    for node in A.walk(expr):
        if isinstance(node, A.Name) and node.id in nets:
            used.add(node.id)
    return used


def _span_text(span) -> str:
    return f"{span.line}:{span.col}-{span.end_line}:{span.end_col}"


def build_graph(model: CheckedModel) -> nx.DiGraph:
    graph = nx.DiGraph(name=model.name, family=model.family,
                       method=model.method.name if model.method else "")
    for var in model.vars.values():
        graph.add_node(var.name, role=var.role, type=str(var.type), shape=list(var.type.shape),
                       dist=var.construct or "", span=_span_text(var.span))
    for net in model.nets.values():
        graph.add_node(net.name, role=net.kind, type=net.ctor, shape=[net.out_width or 0],
                       dist="", span=_span_text(net.span))
    for flow in model.flows.values():
        graph.add_node(flow.name, role="flow", type="flow", shape=[flow.dim or 0], dist="",
                       span=_span_text(flow.decl.name_span))
    for var in model.vars.values():
        if var.stmt is not None:
            kind = "stochastic" if isinstance(var.stmt, A.SampleStmt) else "deterministic"
            for parent in var.parents:
                _add_edge(graph, parent, var.name, kind)
            for net in _nets_used(var.stmt.expr, set(model.nets) | set(model.flows)):
                _add_edge(graph, net, var.name, "net")
        if var.guide_stmt is not None:
            for parent in var.guide_parents:
                _add_edge(graph, parent, var.name, "guide")
            for net in _nets_used(var.guide_stmt.expr, set(model.nets) | set(model.flows)):
                _add_edge(graph, net, var.name, "net")
    for net in model.nets.values():
        if net.kind == "critic":
            seen = net.inputs or [v.name for v in model.data_vars if not v.is_covariate]
            for name in seen:
                if name in model.vars:
                    _add_edge(graph, name, net.name, "net")
    return graph


def build_ir(model: CheckedModel) -> ModelIR:
    return ModelIR(model, build_graph(model))
