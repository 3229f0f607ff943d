"""`fit` and `sample` blocks: known keys, well-formed values, data sets and samplers."""
from __future__ import annotations

from .. import ast as A
from .. import errors as E
from ..catalog import DATASETS, FAMILY_FIT_OPTIONS
from ..options_schema import (DATASET_SCHEMAS, FIT_KEYS, METHODS, SAMPLE_KEYS, SAMPLE_METHODS, OneOf,
                              validate)
from ..values import CallValue, Sym, to_value
from .context import Context

__all__ = ["check_blocks", "check_family_options"]


def check_blocks(ctx: Context) -> tuple[dict, dict]:
    """Validated option values of the fit and sample blocks (key -> plain value)."""
    out = {"fit": {}, "sample": {}}
    seen_blocks: dict[str, A.OptionBlock] = {}
    for block in ctx.model.of_type(A.OptionBlock):
        if block.kind in seen_blocks:
            ctx.error(E.defined_twice(block.span, f"{block.kind} block", seen_blocks[block.kind].span))
            continue
        seen_blocks[block.kind] = block
        keys = FIT_KEYS if block.kind == "fit" else SAMPLE_KEYS
        for opt in block.options:
            if opt.key in out[block.kind]:
                ctx.error(E.bad_option(opt.key_span, f"{block.kind} option '{opt.key}' is given twice"))
                continue
            if opt.key not in keys:
                ctx.error(E.unknown(opt.key_span, f"{block.kind} option", opt.key, keys))
                continue
            value = to_value(opt.value)
            out[block.kind][opt.key] = value
            _check_value(ctx, block.kind, opt, value, keys[opt.key])
    return out["fit"], out["sample"]


def check_family_options(ctx: Context, family: str) -> None:
    """Fit options the model's family would not read (an EMA where no net keeps one, a
    critic optimizer without a critic) are errors rather than silently ignored."""
    for block in ctx.model.of_type(A.OptionBlock):
        if block.kind != "fit":
            continue
        for opt in block.options:
            families = FAMILY_FIT_OPTIONS.get(opt.key)
            if families is not None and family not in families:
                ctx.error(E.unsupported(opt.key_span, f"fit option '{opt.key}' does not apply to a {family} model",
                                        f"'{opt.key}' is read by {_listed(families)} models; remove it"))


def _listed(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _check_value(ctx: Context, kind: str, opt: A.Option, value, schema) -> None:
    what = f"{kind}.{opt.key}"
    if opt.key == "method":
        table = METHODS if kind == "fit" else SAMPLE_METHODS
        name = value.name if isinstance(value, (Sym, CallValue)) else None
        if kind == "fit" and name == "auto":
            return
        if name not in table:
            ctx.error(E.unknown(opt.value.span, "method" if kind == "fit" else "sample method",
                                name or str(value), list(table) + (["auto"] if kind == "fit" else [])))
            return
        ctx.extend(validate(table[name], value, opt.value.span, what))
        if kind == "fit" and name in ("nce", "fce"):
            _check_noise(ctx, name, value)
        if kind == "fit" and name == "adversarial" and isinstance(value, CallValue):
            _check_penalty_form(ctx, value)
    elif opt.key == "data" and kind == "fit":
        _check_data(ctx, opt, value)
    else:
        ctx.extend(validate(schema, value, opt.value.span, what))


def _check_noise(ctx: Context, method: str, value) -> None:
    noise = value.options.get("noise") if isinstance(value, CallValue) else None
    if noise is None and isinstance(value, CallValue) and value.args:
        noise = value.args[0]
    if noise is None:
        return
    if method == "fce":
        if not isinstance(noise, Sym) or noise.name not in ctx.flows:
            name = getattr(noise, "name", str(noise))
            ctx.error(E.unknown(getattr(noise, "span", value.span), "flow for fce noise", name, ctx.flows))
        else:
            ctx.flows[noise.name].used_as_option = True
    elif method == "nce":
        from ..catalog import DISTRIBUTIONS
        if not isinstance(noise, CallValue) or noise.name not in DISTRIBUTIONS:
            name = getattr(noise, "name", str(noise))
            ctx.error(E.unknown(getattr(noise, "span", value.span), "noise distribution", name,
                                ["Normal", "Laplace", "StudentT"]))


def _check_penalty_form(ctx: Context, value: CallValue) -> None:
    """`penalty_form` shapes a gradient penalty; where none is on it would be ignored."""
    options = value.options
    form = options.get("penalty_form")
    if form is None:
        return
    loss = getattr(options.get("loss"), "name", None)
    # only wgan_gp turns a penalty on by default (10), as the numerics' loss table says
    penalty = options.get("penalty", 10 if loss == "wgan_gp" else 0)
    if isinstance(penalty, (int, float)) and penalty == 0:
        ctx.error(E.unsupported(getattr(form, "span", value.span),
                                "penalty_form has no effect without a gradient penalty",
                                f"loss {loss or 'non_saturating'} has no penalty here; add one "
                                "(penalty = 10) or remove penalty_form"))


def _check_data(ctx: Context, opt: A.Option, value) -> None:
    if isinstance(value, str):
        return  # a path; read only by fit
    name = value.name if isinstance(value, (Sym, CallValue)) else None
    if name not in DATASETS:
        span = value.expr.func.span if isinstance(value, CallValue) and value.expr is not None else opt.value.span
        ctx.error(E.unknown(span, "data set", name or str(value), DATASETS))
        return
    ctx.extend(validate(DATASET_SCHEMAS[name], value, opt.value.span, "fit.data"))
    if name == "samples" and isinstance(value, CallValue):
        target = value.options.get("model", value.args[0] if value.args else None)
        if not isinstance(target, Sym) or target.name not in ctx.model_names:
            tname = getattr(target, "name", str(target))
            ctx.error(E.unknown(getattr(target, "span", opt.value.span), "model", tname, ctx.model_names))
        elif target.name == ctx.model.name:
            ctx.error(E.bad_option(target.span, "a model cannot be fitted to its own samples"))
