"""The model's statements must form a DAG; a cycle names its variables."""
from __future__ import annotations

from .. import errors as E
from .context import Context

__all__ = ["check_acyclic", "find_cycle"]


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in child -> parents form, iteratively (no recursion), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in sorted(edges):
        if state.get(root):
            continue
        stack = [(root, iter(edges.get(root, ())))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(edges.get(nxt, ()))))
                path.append(nxt)
    return None


def check_acyclic(ctx: Context) -> None:
    edges = {v.name: [p for p in v.parents if p != v.name] for v in ctx.vars.values()}
    for v in ctx.vars.values():
        if v.name in v.parents and v.stmt is not None:
            ctx.error(E.cycle(v.stmt.span, [v.name]))
    loop = find_cycle(edges)
    if loop:
        # parents point backwards; report in the direction of the arrows (parent -> child)
        names = list(reversed(loop))
        stmt = ctx.vars[loop[0]].stmt
        ctx.error(E.cycle(stmt.span if stmt is not None else ctx.vars[loop[0]].span, names))
