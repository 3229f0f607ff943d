"""Which inference fits a model (LANGUAGE.md §7), why, and what else is valid.

Rules, first that applies:
1. an implicit `x = G(z)` with a critic -> adversarial
2. Diffusion, ScoreModel or DDPM -> dsm
3. Energy -> exact_sm up to 8 data dimensions, else dsm
4. a discrete latent with a deterministic `nearest` guide -> vq
5. a continuous latent that is not only the base of a flow -> svi
6. a declared latent, all latents discrete with finite support -> enumeration
7. a param with a prior and no nets in the model -> nuts
8. otherwise -> exact_nll
"""
from __future__ import annotations

from . import ast as A
from . import errors as E
from .checked import MethodChoice, VarInfo
from .checks.context import Context
from .values import CallValue, Sym

__all__ = ["classify_family", "choose_method", "valid_methods", "EVALUATION"]

EXACT_SM_MAX_DIM = 8

EVALUATION = {
    "exact_nll": "exact NLL in nats per example and bits per dimension",
    "enumeration": "exact NLL with the discrete latents summed out; posterior responsibilities by query",
    "svi": "NLL as an importance-weighted bound (IWAE-k) and the ELBO, in nats per example",
    "nuts": "posterior mean, sd, effective sample size and R-hat per parameter; posterior predictive NLL",
    "vq": "reconstruction NLL, codebook usage (perplexity); the uniform prior's KL is a constant",
    "distill": "KL(student || teacher) estimate and both models' exact NLL on held-out data",
    "energy": "NLL with log Z by quadrature (<= 2 dims) or annealed importance sampling, and sample MMD",
    "diffusion": "exact NLL via the probability-flow ODE (nats, bits/dim) and sample MMD",
    "score": "sample MMD against held-out data (a noise-conditional score has no tractable density)",
    "ddpm": "the variational bound on NLL (nats, bits/dim) and sample MMD",
    "adversarial": "MMD against held-out data next to the noise floor; mode coverage on mixture toy sets",
}


def _is_flow_base(ctx: Context, var: VarInfo) -> bool:
    users = [v for v in ctx.vars.values() if v.construct == "flow" and var.name in v.parents]
    return bool(users) and all(u.construct == "flow" for u in users)


def classify_family(ctx: Context) -> str:
    constructs = {v.construct for v in ctx.vars.values()}
    if "implicit" in constructs:
        return "implicit"
    for construct, family in (("Diffusion", "diffusion"), ("ScoreModel", "score"), ("DDPM", "ddpm"),
                              ("Energy", "energy")):
        if construct in constructs:
            return family
    if any(_nearest_guide(v) for v in ctx.vars.values()):
        return "vq"
    if any(_continuous_latent(ctx, v) for v in ctx.vars.values()):
        return "latent"
    if "flow" in constructs:
        return "flow"
    if "Autoregressive" in constructs:
        return "autoregressive"
    return "bayesnet"


def _nearest_guide(var: VarInfo) -> bool:
    stmt = var.guide_stmt
    return isinstance(stmt, A.AssignStmt) and A.call_name(stmt.expr) == "nearest"


def _continuous_latent(ctx: Context, var: VarInfo) -> bool:
    """A continuous latent needing inference. A flow's base (u in z = prior(u)) does not: it
    is recovered by inverting the flow; the latent a flow prior defines does, guided or not
    (§5.4). A latent defined only in the guide (a guide flow's base) is not part of p."""
    if var.kind != "latent" or var.type.discrete or var.stmt is None:
        return False
    return not _is_flow_base(ctx, var)


def _auto(ctx: Context, family: str) -> tuple[str, str, list[str]]:
    """(method, rule, reasons) for method = auto."""
    latents = [v for v in ctx.vars.values() if v.kind == "latent"]
    if family == "implicit":
        gen = [v.name for v in ctx.vars.values() if v.construct == "implicit"]
        critics = [n.name for n in ctx.nets.values() if n.kind == "critic"]
        return "adversarial", "1", [f"{', '.join(gen)} is an implicit generator output (no density) and "
                                    f"critic {', '.join(critics)} is declared"]
    if family in ("diffusion", "score", "ddpm"):
        var = next(v for v in ctx.vars.values() if v.construct in ("Diffusion", "ScoreModel", "DDPM"))
        return "dsm", "2", [f"{var.name} ~ {var.construct}(...): trained by denoising score matching"]
    if family == "energy":
        var = next(v for v in ctx.vars.values() if v.construct == "Energy")
        if var.type.size <= EXACT_SM_MAX_DIM:
            return "exact_sm", "3", [f"{var.name} ~ Energy(...) has {var.type.size} dimensions "
                                     f"(<= {EXACT_SM_MAX_DIM}): the exact Hessian trace is affordable"]
        return "dsm", "3", [f"{var.name} ~ Energy(...) has {var.type.size} dimensions "
                            f"(> {EXACT_SM_MAX_DIM}): denoising score matching avoids the Hessian"]
    if family == "vq":
        var = next(v for v in ctx.vars.values() if _nearest_guide(v))
        return "vq", "4", [f"discrete latent {var.name} has the deterministic guide {var.name} = nearest(...)"]
    cont = [v.name for v in latents if _continuous_latent(ctx, v)]
    if cont:
        return "svi", "5", [f"continuous latent(s) {', '.join(cont)} cannot be summed out: "
                            "variational inference on the ELBO"]
    if latents and all(v.type.discrete and v.construct != "flow" for v in latents if not _is_flow_base(ctx, v)) \
            and any(not _is_flow_base(ctx, v) and v.construct != "flow" for v in latents):
        names = [v.name for v in latents if v.type.discrete]
        return "enumeration", "6", [f"all latents ({', '.join(names)}) are discrete with finite support: "
                                    "summed out exactly"]
    priors = [v.name for v in ctx.vars.values() if v.kind == "param" and v.stmt is not None]
    if priors and not ctx.nets:
        return "nuts", "7", [f"param(s) {', '.join(priors)} have priors and the model has no nets: "
                             "the posterior is sampled with NUTS"]
    why = "every conditional is normalized and observed (or a covariate)"
    if family == "flow":
        why = "x = f(z) with f a flow has an exact density by change of variables"
    elif family == "autoregressive":
        why = "an autoregressive model's chain-rule factorization gives the exact likelihood"
    return "exact_nll", "8", [why + ": maximum likelihood"]


def valid_methods(ctx: Context, family: str, auto: str) -> list[str]:
    if family == "energy":
        methods = ["exact_sm", "dsm", "ssm", "cd", "nce"]
        return methods + (["fce"] if ctx.flows else [])
    table = {"implicit": ["adversarial"], "diffusion": ["dsm"], "score": ["dsm"], "ddpm": ["dsm"],
             "vq": ["vq"], "latent": ["svi"], "flow": ["exact_nll", "distill"],
             "autoregressive": ["exact_nll"]}
    if family in table:
        return table[family]
    if auto == "enumeration":
        return ["enumeration", "svi"]
    if auto == "nuts":
        return ["nuts", "hmc"]
    return ["exact_nll"]


def _evaluation(family: str, method: str) -> str:
    if family in ("energy", "diffusion", "score", "ddpm"):
        return EVALUATION[family]
    if family == "implicit":
        return EVALUATION["adversarial"]
    return EVALUATION.get(method, EVALUATION["exact_nll"])


def _named_options(given: CallValue) -> dict:
    """A method's options by name, positional ones named by the method's schema."""
    from .options_schema import METHODS
    schema = METHODS.get(given.name)
    positional = schema.positional if schema is not None else ()
    return {**dict(zip(positional, given.args)), **dict(given.kwargs)}


def choose_method(ctx: Context, family: str, fit: dict) -> MethodChoice:
    method, rule, reasons = _auto(ctx, family)
    valid = valid_methods(ctx, family, method)
    given = fit.get("method")
    name = given.name if isinstance(given, (Sym, CallValue)) else None
    options = _named_options(given) if isinstance(given, CallValue) else {}
    span = given.span if isinstance(given, (Sym, CallValue)) else ctx.model.name_span
    if name and name != "auto":
        from .options_schema import METHODS
        if name in METHODS and name not in valid:
            ctx.error(E.method_not_valid(span, name, valid, f"its structure calls for {method}, rule {rule} of §7"))
        reasons = [f"fit.method = {name} was given"] + [f"(auto would choose {method}: {reasons[0]})"]
        return MethodChoice(name, options, "fit.method", reasons,
                            [m for m in valid if m != name], _evaluation(family, name), span)
    reasons = [f"rule {rule} of LANGUAGE.md §7: {reasons[0]}"] + reasons[1:]
    return MethodChoice(method, options, rule, reasons, [m for m in valid if m != method],
                        _evaluation(family, method), span)
