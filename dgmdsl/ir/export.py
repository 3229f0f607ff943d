"""The graph in dot, JSON (node-link) and GraphML."""
from __future__ import annotations

import json

import networkx as nx

__all__ = ["to_dot", "to_json", "to_graphml", "FORMATS"]

_ROLE_SHAPES = {"data": "box", "latent": "ellipse", "param": "diamond", "deterministic": "octagon",
                "net": "component", "critic": "component", "flow": "cds"}
_EDGE_STYLES = {"stochastic": "solid", "deterministic": "bold", "net": "dotted", "guide": "dashed"}


def _q(text: str) -> str:
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(graph: nx.DiGraph) -> str:
    lines = [f"digraph {_q(graph.graph.get('name', 'model'))} {{", "    rankdir=TB;"]
    for node, data in graph.nodes(data=True):
        label = f"{node} : {data.get('type', '')}"
        if data.get("dist"):
            label += f"\n~ {data['dist']}" if data["role"] not in ("net", "critic", "flow") else ""
        shape = _ROLE_SHAPES.get(data.get("role"), "ellipse")
        style = ', style=filled, fillcolor="#dddddd"' if data.get("role") == "data" else ""
        lines.append(f"    {_q(node)} [label={_q(label)}, shape={shape}{style}];")
    for u, v, kind in graph.edges(data="kind"):
        style = _EDGE_STYLES.get(kind.split("+")[0], "solid")
        extra = ", color=blue" if "guide" in kind else ""
        lines.append(f"    {_q(u)} -> {_q(v)} [label={_q(kind)}, style={style}{extra}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(graph: nx.DiGraph) -> str:
    return json.dumps(nx.node_link_data(graph, edges="edges"), indent=2, sort_keys=True) + "\n"


def to_graphml(graph: nx.DiGraph) -> str:
    # GraphML holds scalars only: shapes become "[784]"-style strings.
    flat = graph.copy()
    for _, data in flat.nodes(data=True):
        data["shape"] = json.dumps(data.get("shape", []))
    return "\n".join(nx.generate_graphml(flat)) + "\n"


FORMATS = {"dot": to_dot, "json": to_json, "graphml": to_graphml}
