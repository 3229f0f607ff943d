"""The checker: AST -> checked models, collecting every diagnostic (capped) in one pass."""
from __future__ import annotations

from . import ast as A
from . import errors as E
from .checked import CheckedModel, CheckedProgram
from .checks.context import Context
from .checks.dag import check_acyclic
from .checks.flows import check_flow_latents, check_flows
from .checks.guides import check_guides
from .checks.options import check_blocks, check_family_options
from .checks.sde import check_sdes
from .checks.statements import check_statements
from .checks.symbols import check_declarations, check_definitions
from .diagnostics import DgmError, Diagnostic
from .methods import choose_method, classify_family
from .parser import parse
from .spans import Source

__all__ = ["check_program", "check_source"]


def _check_critics(ctx: Context) -> None:
    for net in ctx.nets.values():
        if net.kind != "critic":
            continue
        if net.inputs is None:
            seen = [v for v in ctx.vars.values() if v.kind == "data" and not v.is_covariate]
        else:
            seen = []
            for name in net.inputs:
                if name not in ctx.vars:
                    ctx.error(E.undefined_name(net.span, name, ctx.vars))
                else:
                    seen.append(ctx.vars[name])
        net.in_width = sum(v.type.width for v in seen)
        net.out_width = 1
        implicit = [v for v in ctx.vars.values() if v.construct == "implicit"]
        if not implicit:
            ctx.error(E.unsupported(net.span, f"critic '{net.name}' has no implicit generator to judge",
                                    "a critic pairs with x = G(z), G a net"))


def _check_implicit_without_critic(ctx: Context) -> None:
    for var in ctx.vars.values():
        if var.kind == "data" and var.construct == "deterministic" and A.call_name(var.stmt.expr) in ctx.nets:
            ctx.error(E.unsupported(var.stmt.span, f"{var.name} = {A.call_name(var.stmt.expr)}(...) has no "
                                                   "density and no critic to train it",
                                    "declare a critic (GAN), or use a flow or a distribution"))


def _unused_nets(ctx: Context) -> None:
    for net in ctx.nets.values():
        if net.kind == "net" and not net.uses:
            ctx.error(E.unsupported(net.span, f"net '{net.name}' is declared but never used",
                                    "remove it, or call it in a statement"))


def check_model(model: A.Model, source: Source, model_names: set[str]) -> tuple[CheckedModel, list[Diagnostic]]:
    ctx = Context(model, source, model_names)
    check_declarations(ctx)
    check_definitions(ctx)
    check_flows(ctx)
    check_sdes(ctx)
    check_statements(ctx)
    check_guides(ctx)
    check_flow_latents(ctx)
    _check_critics(ctx)
    _check_implicit_without_critic(ctx)
    check_acyclic(ctx)
    fit, sample = check_blocks(ctx)
    _unused_nets(ctx)
    family = classify_family(ctx)
    check_family_options(ctx, family)
    method = choose_method(ctx, family, fit)
    checked = CheckedModel(model.name, model, source, ctx.vars, ctx.nets, ctx.flows, ctx.sdes,
                           fit, sample, family, method)
    return checked, ctx.diagnostics


def check_program(program: A.Program, source: Source) -> CheckedProgram:
    """Check every model; raise DgmError with all diagnostics if any."""
    diags: list[Diagnostic] = []
    models = {}
    names = {m.name for m in program.models}
    for model in program.models:
        if model.name in models:
            diags.append(E.duplicate_declaration(model.name_span, model.name,
                                                 models[model.name].ast.name_span).with_filename(source.filename))
            continue
        checked, model_diags = check_model(model, source, names)
        diags += model_diags
        models[model.name] = checked
    if not program.models:
        diags.append(Diagnostic(source.end_span(), "no model in this file", "write: model Name { ... }",
                                filename=source.filename))
    if diags:
        raise DgmError(diags, source)
    return CheckedProgram(source, models)


def check_source(text: str, filename: str = "<input>") -> CheckedProgram:
    return check_program(parse(text, filename), Source(filename, text))
