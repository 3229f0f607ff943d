"""Guide blocks: only latents on the left, each defined at most once."""
from __future__ import annotations

from .. import errors as E
from .context import Context
from .statements import check_guide_statement

__all__ = ["check_guides"]


def check_guides(ctx: Context) -> None:
    for stmt in ctx.guide_statements():
        var = ctx.vars.get(stmt.target)
        if var is None:
            ctx.error(E.undeclared_target(stmt.target_span, stmt.target, ctx.vars))
            continue
        if var.kind != "latent":
            ctx.error(E.guide_defines_non_latent(stmt.target_span, var.name, var.kind))
            continue
        if var.guide_stmt is not None:
            ctx.error(E.defined_twice(stmt.target_span, var.name, var.guide_stmt.target_span))
            continue
        var.guide_stmt = stmt
        var.guide_parents = sorted(check_guide_statement(ctx, stmt, var))
