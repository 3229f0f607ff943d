"""The family constructs of LANGUAGE.md §5: Autoregressive, Energy, Diffusion, ScoreModel, DDPM."""
from __future__ import annotations

from .. import ast as A
from .. import errors as E
from ..catalog import AR_FAMILIES, SUPPORT_WORDS, support_fits
from ..checked import VarInfo
from .context import Context
from .exprs import net_input, record_net_output
from .symbols import check_net_call

__all__ = ["check_construct", "AR_CONDITIONERS"]

AR_CONDITIONERS = {"Linear": {}, "NADE": {"hidden", "act"}, "MADE": {"hidden", "masks", "act"},
                   "PixelCNN": {"layers", "channels"}}
_AR_KEYS = {"conditioner", "order", "context"}
_SCHEDULES = {"linear": 2, "cosine": 1, "geometric": 3}


def check_construct(ctx: Context, var: VarInfo, expr: A.Call) -> set[str]:
    return {"Autoregressive": _autoregressive, "Energy": _energy, "Diffusion": _diffusion,
            "ScoreModel": _score_model, "DDPM": _ddpm}[expr.func.id](ctx, var, expr)


def _real_only(ctx: Context, var: VarInfo, expr: A.Call) -> None:
    if var.type.base != "real":
        ctx.error(E.support_mismatch(expr.func.span, var.name, str(var.type), expr.func.id, "real-valued"))


def _kwargs(ctx: Context, expr: A.Call, allowed: set[str], what: str) -> dict:
    out = {}
    for arg in expr.args:
        if arg.name is None:
            continue
        if arg.name not in allowed:
            ctx.error(E.unknown(arg.span, f"option of {what}", arg.name, allowed))
        out[arg.name] = arg
    return out


def _net_arg(ctx: Context, value, what: str):
    if isinstance(value, A.Name) and value.id in ctx.nets:
        return ctx.nets[value.id]
    name = A.call_name(value) or "expression"
    ctx.error(E.unknown(value.span, f"net for {what}", name, ctx.nets))
    return None


def _autoregressive(ctx: Context, var: VarInfo, expr: A.Call) -> set[str]:
    positional = expr.positional
    if len(positional) != 1:
        ctx.error(E.bad_argument(expr.span, "Autoregressive takes its per-position family first",
                                 "e.g. Autoregressive(Bernoulli, conditioner = NADE(hidden = 500))"))
        return set()
    fam = A.call_name(positional[0])
    if fam not in AR_FAMILIES:
        ctx.error(E.unknown(positional[0].span, "per-position family", fam or "expression", AR_FAMILIES))
    elif not support_fits(AR_FAMILIES[fam], var.type.base):
        ctx.error(E.support_mismatch(positional[0].span, var.name, str(var.type), fam,
                                     SUPPORT_WORDS[AR_FAMILIES[fam]]))
    kw = _kwargs(ctx, expr, _AR_KEYS, "Autoregressive")
    if "conditioner" in kw:
        _conditioner(ctx, var, kw["conditioner"].value)
    if "order" in kw:
        _order(ctx, var, kw["order"].value)
    if "context" in kw:
        value = kw["context"].value
        if not (isinstance(value, A.Num) and value.is_int and value.value >= 0):
            ctx.error(E.bad_argument(value.span, "context must be a non-negative integer"))
    return set()


def _conditioner(ctx: Context, var: VarInfo, value) -> None:
    name = A.call_name(value)
    if name in ctx.nets:
        net = ctx.nets[name]
        net.uses.append(value.span)
        if net.ctor not in ("MLP", "MADE", "Linear"):
            ctx.error(E.unsupported(value.span, f"net '{name}' ({net.ctor}) cannot be masked into an "
                                                "autoregressive conditioner",
                                    "use an MLP (masked as MADE), MADE, NADE, Linear or PixelCNN"))
        return
    if name not in AR_CONDITIONERS:
        ctx.error(E.unknown(value.span, "conditioner", name or "expression", AR_CONDITIONERS))
        return
    if isinstance(value, A.Call):
        for arg in value.args:
            if arg.name not in AR_CONDITIONERS[name]:
                ctx.error(E.unknown(arg.span, f"option of {name}", arg.name or "positional argument",
                                    AR_CONDITIONERS[name]))
        check_net_call(ctx, value)
    if name == "PixelCNN" and len(var.type.shape) != 3:
        ctx.error(E.unsupported(value.span, f"PixelCNN needs an image-shaped variable [C, H, W]; "
                                            f"{var.name} is {var.type}"))


def _order(ctx: Context, var: VarInfo, value) -> None:
    name = A.call_name(value)
    if isinstance(value, A.Bracket):
        items = value.items
        nums = [int(i.value) for i in items if isinstance(i, A.Num) and i.is_int]
        if len(nums) != len(items) or sorted(nums) != list(range(var.type.size)):
            ctx.error(E.bad_argument(value.span, f"order must be a permutation of 0..{var.type.size - 1}",
                                     f"{var.name} has {var.type.size} positions"))
    elif name not in ("raster", "reverse", "random"):
        ctx.error(E.unknown(value.span, "order", name or "expression", ["raster", "reverse", "random"]))


def _energy(ctx: Context, var: VarInfo, expr: A.Call) -> set[str]:
    _real_only(ctx, var, expr)
    if len(expr.args) != 1 or expr.args[0].name is not None:
        ctx.error(E.bad_argument(expr.span, "Energy takes one net: Energy(E)"))
        return set()
    net = _net_arg(ctx, expr.args[0].value, "Energy")
    if net is not None:
        net.in_width = net.in_width or var.type.size
        net.in_shape = net.in_shape or var.type.shape
        net.uses.append(expr.span)
        record_net_output(ctx, net.name, 1, expr.span)
    return set()


def _score_net(ctx: Context, var: VarInfo, value, what: str) -> None:
    net = _net_arg(ctx, value, what)
    if net is None:
        return
    net.time_input = True
    net.uses.append(value.span)
    net.in_width = net.in_width or var.type.size
    net.in_shape = net.in_shape or var.type.shape
    record_net_output(ctx, net.name, var.type.size, value.span)
    if len(var.type.shape) > 1 and net.ctor not in ("UNet", "Conv"):
        # an MLP on images is allowed: the backend flattens; say nothing
        pass


def _diffusion(ctx: Context, var: VarInfo, expr: A.Call) -> set[str]:
    _real_only(ctx, var, expr)
    kw = _kwargs(ctx, expr, {"score"}, "Diffusion")
    positional = expr.positional
    if len(positional) != 1 or not isinstance(positional[0], A.Name) or positional[0].id not in ctx.sdes:
        name = A.call_name(positional[0]) if positional else "nothing"
        ctx.error(E.unknown(positional[0].span if positional else expr.span, "sde", name or "expression", ctx.sdes))
    else:
        sde = ctx.sdes[positional[0].id]
        if sde.state != var.name and sde.state:
            pass  # the state name inside the sde block is local: it stands for this variable
    if "score" not in kw:
        ctx.error(E.missing_argument(expr.span, "Diffusion", "score"))
    else:
        _score_net(ctx, var, kw["score"].value, "Diffusion")
    return set()


def _schedule(ctx: Context, value, allowed: set[str], what: str) -> None:
    name = A.call_name(value)
    if name not in allowed or not isinstance(value, A.Call):
        ctx.error(E.unknown(value.span, f"schedule for {what}", name or "expression", allowed))
        return
    nums = [a.value for a in value.args]
    if len(nums) != _SCHEDULES[name] or not all(isinstance(n, A.Num) and n.value > 0 for n in nums):
        ctx.error(E.bad_argument(value.span, f"{name} takes {_SCHEDULES[name]} positive numbers"))
        return
    if name == "geometric" and not (float(nums[2].value).is_integer() and nums[2].value >= 1):
        ctx.error(E.bad_argument(nums[2].span, "the number of levels must be a positive integer"))


def _score_model(ctx: Context, var: VarInfo, expr: A.Call) -> set[str]:
    _real_only(ctx, var, expr)
    kw = _kwargs(ctx, expr, {"sigmas", "score"}, "ScoreModel")
    net_expr = expr.positional[0] if expr.positional else (kw["score"].value if "score" in kw else None)
    if net_expr is None:
        ctx.error(E.missing_argument(expr.span, "ScoreModel", "score"))
    else:
        _score_net(ctx, var, net_expr, "ScoreModel")
    if "sigmas" in kw:
        _schedule(ctx, kw["sigmas"].value, {"geometric"}, "ScoreModel")
    return set()


def _ddpm(ctx: Context, var: VarInfo, expr: A.Call) -> set[str]:
    _real_only(ctx, var, expr)
    kw = _kwargs(ctx, expr, {"T", "beta", "eps"}, "DDPM")
    if "T" in kw:
        t = kw["T"].value
        if not (isinstance(t, A.Num) and t.is_int and 1 <= t.value <= 100_000):
            ctx.error(E.bad_argument(t.span, "T must be an integer number of steps in 1..100000"))
    if "beta" in kw:
        _schedule(ctx, kw["beta"].value, {"linear", "cosine"}, "DDPM")
    if "eps" not in kw:
        ctx.error(E.missing_argument(expr.span, "DDPM", "eps"))
    else:
        _score_net(ctx, var, kw["eps"].value, "DDPM")
    return set()
