"""The graph IR: checked models as networkx graphs (imports the front end, never torch)."""
from .graph import ModelIR, build_graph, build_ir, edge_kinds

__all__ = ["ModelIR", "build_graph", "build_ir", "edge_kinds"]
