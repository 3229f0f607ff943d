"""What each `fit`/`sample` key, method, optimizer and data set accepts, and the validator.

A schema is a small tree: `Num(...)`, `Enum(...)`, `Ctor(name, **options)`, `OneOf(...)`,
`Str()`, `Any()`. `validate(schema, value)` yields diagnostics; it never raises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

from . import errors as E
from .catalog import DATASETS, DISTRIBUTIONS
from .diagnostics import Diagnostic
from .spans import NO_SPAN, Span
from .values import NOT_A_VALUE, CallValue, Sym

__all__ = ["Num", "Enum", "Ctor", "OneOf", "Str", "AnyValue", "validate", "METHODS", "SAMPLE_METHODS",
           "FIT_KEYS", "SAMPLE_KEYS", "OPTIMIZERS", "DATASET_SCHEMAS", "METHOD_NAMES",
           "LR_SCHEDULES", "LR_SCHEDULE_CTORS"]


@dataclass(frozen=True)
class Num:
    integer: bool = False
    low: float | None = None          # inclusive
    high: float | None = None         # inclusive
    positive: bool = False            # strictly > 0
    below: float | None = None        # exclusive upper bound

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.positive:
            kind = "a positive " + kind.split(" ", 1)[1]
        if self.low is not None and self.below is not None:
            kind += f" in [{self.low:g}, {self.below:g})"
        elif self.low is not None and self.high is not None:
            kind += f" in [{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            kind += f" >= {self.low:g}"
        return kind


@dataclass(frozen=True)
class Enum:
    choices: tuple[str, ...]


@dataclass(frozen=True)
class Ctor:
    name: str
    options: dict = field(default_factory=dict)
    positional: tuple[str, ...] = ()   # names of positional arguments, in order
    required: tuple[str, ...] = ()
    bare_ok: bool = True               # `langevin` alone, with every option defaulted


@dataclass(frozen=True)
class OneOf:
    alternatives: tuple


@dataclass(frozen=True)
class Str:
    pass


@dataclass(frozen=True)
class AnyValue:
    """Checked elsewhere (a distribution or a flow name, resolved against the model)."""

    what: str = ""


def _span_of(value, default: Span) -> Span:
    return getattr(value, "span", None) or default


def validate(schema, value, span: Span, what: str) -> Iterator[Diagnostic]:
    """Diagnostics for `value` against `schema`; `what` names the option in messages."""
    vspan = _span_of(value, span)
    if value is NOT_A_VALUE:
        yield E.bad_option(span, f"{what} must be a constant, a name or a call")
    elif isinstance(schema, AnyValue):
        return
    elif isinstance(schema, Num):
        yield from _validate_num(schema, value, span, what)
    elif isinstance(schema, Str):
        if not isinstance(value, str):
            yield E.bad_option(vspan, f"{what} must be a string", 'write it in double quotes: "..."')
    elif isinstance(schema, Enum):
        if not isinstance(value, Sym) or value.name not in schema.choices:
            name = value.name if isinstance(value, (Sym, CallValue)) else repr(value)
            yield E.unknown(vspan, what, name, schema.choices)
    elif isinstance(schema, Ctor):
        yield from _validate_ctor(schema, value, span, what)
    elif isinstance(schema, OneOf):
        yield from _validate_one_of(schema, value, span, what)


def _validate_num(schema: Num, value, span: Span, what: str) -> Iterator[Diagnostic]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and not math.isfinite(value):
        yield E.bad_value(span, f"{what} must be finite, got {value}")
        return
    if ok and schema.integer and not isinstance(value, int):
        ok = False
    if ok and schema.positive and value <= 0:
        ok = False
    if ok and schema.low is not None and value < schema.low:
        ok = False
    if ok and schema.high is not None and value > schema.high:
        ok = False
    if ok and schema.below is not None and value >= schema.below:
        ok = False
    if not ok:
        yield E.bad_option(span, f"{what} must be {schema.describe()}, got {_show(value)}")


def _show(value) -> str:
    if isinstance(value, Sym):
        return value.name
    if isinstance(value, CallValue):
        return value.name + "(...)"
    return repr(value)


def _names(schema) -> list[str]:
    if isinstance(schema, Ctor):
        return [schema.name]
    if isinstance(schema, Enum):
        return list(schema.choices)
    if isinstance(schema, OneOf):
        return [n for alt in schema.alternatives for n in _names(alt)]
    return []


def _validate_one_of(schema: OneOf, value, span: Span, what: str) -> Iterator[Diagnostic]:
    name = value.name if isinstance(value, (Sym, CallValue)) else None
    for alt in schema.alternatives:
        if isinstance(alt, Ctor) and name == alt.name:
            yield from _validate_ctor(alt, value, span, what)
            return
        if isinstance(alt, Enum) and isinstance(value, Sym) and name in alt.choices:
            return
        if isinstance(alt, (Num, Str)) and not isinstance(value, (Sym, CallValue)):
            yield from validate(alt, value, span, what)
            return
    yield E.unknown(_span_of(value, span), what, name if name else _show(value), _names(schema))


def _validate_ctor(schema: Ctor, value, span: Span, what: str) -> Iterator[Diagnostic]:
    if isinstance(value, Sym) and value.name == schema.name:
        if not schema.bare_ok or schema.required:
            yield E.missing_argument(value.span, schema.name, (schema.required or schema.positional)[0])
        return
    if not isinstance(value, CallValue) or value.name != schema.name:
        yield E.unknown(_span_of(value, span), what, _show(value), [schema.name])
        return
    vspan = value.span
    if len(value.args) > len(schema.positional):
        yield E.bad_option(vspan, f"{schema.name} takes at most {len(schema.positional)} positional "
                                  f"argument(s), got {len(value.args)}",
                           "name the options: " + ", ".join(schema.options) if schema.options else None)
    given = dict(zip(schema.positional, value.args))
    for key, val in value.kwargs:
        if key not in schema.options:
            yield E.unknown(_arg_span(value, key, vspan), f"option of {schema.name}", key, schema.options)
        elif key in given:
            yield E.bad_option(vspan, f"{schema.name}: '{key}' given twice")
        given[key] = val
    for key, val in given.items():
        if key in schema.options:
            yield from validate(schema.options[key], val, _arg_span(value, key, vspan), f"{schema.name}.{key}")
    for key in schema.required:
        if key not in given:
            yield E.missing_argument(vspan, schema.name, key)


def _arg_span(value: CallValue, key: str, default: Span) -> Span:
    if value.expr is not None:
        for arg in value.expr.args:
            if arg.name == key:
                return arg.span
    return default


POS_INT = Num(integer=True, positive=True)
NONNEG_INT = Num(integer=True, low=0)
POS = Num(positive=True)
NONNEG = Num(low=0)
PROB = Num(low=0, high=1)
DECAY = Num(low=0, below=1)  # a decay rate: at 1 the first value is kept forever

LANGEVIN = Ctor("langevin", {"steps": POS_INT, "step_size": POS}, ("steps", "step_size"))
MH = Ctor("mh", {"steps": POS_INT, "proposal_scale": POS}, ("steps", "proposal_scale"))
DIVERGENCES = ("kl", "reverse_kl", "js", "pearson", "squared_hellinger")
ADV_LOSSES = ("minimax", "non_saturating", "wgan", "wgan_gp", "hinge", "least_squares")
PENALTY_FORMS = ("one_sided", "two_sided")  # of the gradient penalty (docs/decisions.md)

METHODS: dict[str, Ctor] = {c.name: c for c in [
    Ctor("exact_nll"),
    Ctor("enumeration"),
    Ctor("svi", {"elbo": OneOf((Enum(("trace", "trace_enum")),
                                Ctor("iwae", {"k": POS_INT}, ("k",)))),
                 "particles": POS_INT}),
    Ctor("nuts", {"warmup": POS_INT, "samples": POS_INT, "chains": POS_INT, "target_accept": PROB},
         ("warmup", "samples")),
    Ctor("hmc", {"warmup": POS_INT, "samples": POS_INT, "step_size": POS, "num_steps": POS_INT},
         ("warmup", "samples")),
    Ctor("exact_sm"),
    Ctor("dsm", {"sigma": POS, "weighting": Enum(("likelihood", "variance"))}, ("sigma",)),
    Ctor("ssm", {"projections": POS_INT}, ("projections",)),
    Ctor("cd", {"sampler": OneOf((LANGEVIN, MH)), "buffer": NONNEG_INT,
                "fresh": PROB, "l2": NONNEG}),
    Ctor("nce", {"noise": AnyValue("distribution"), "ratio": POS_INT}, ("noise",)),
    Ctor("fce", {"noise": AnyValue("flow")}, ("noise",), required=("noise",), bare_ok=False),
    Ctor("adversarial", {"loss": OneOf((Enum(ADV_LOSSES),
                                        Ctor("f_gan", {"divergence": Enum(DIVERGENCES)}, ("divergence",)))),
                         "critic_steps": POS_INT, "penalty": NONNEG, "clip": POS,
                         "penalty_form": Enum(PENALTY_FORMS)}),
    Ctor("vq", {"commitment": NONNEG, "codebook": OneOf((Ctor("ema", {"decay": DECAY}, ("decay",)),
                                                         Enum(("loss",))))}),
    Ctor("distill", {"teacher": Str(), "samples": POS_INT}, ("teacher",), required=("teacher",),
         bare_ok=False),
]}
METHOD_NAMES = tuple(METHODS)

SAMPLE_METHODS: dict[str, Ctor] = {c.name: c for c in [
    Ctor("ancestral"),
    LANGEVIN,
    Ctor("mala", {"steps": POS_INT, "step_size": POS}, ("steps", "step_size")),
    MH,
    Ctor("annealed_langevin", {"steps_per_level": POS_INT, "eps": POS}, ("steps_per_level", "eps")),
    Ctor("euler_maruyama", {"steps": POS_INT}, ("steps",)),
    Ctor("pc", {"steps": POS_INT, "corrector": Ctor("langevin", {"snr": POS, "steps": POS_INT}, ("snr",))},
         ("steps",)),
    Ctor("ode", {"rtol": POS, "atol": POS}, ("rtol", "atol")),
    Ctor("ddim", {"steps": POS_INT, "eta": NONNEG}, ("steps", "eta")),
]}

_OPT_COMMON = {"lr": POS, "weight_decay": NONNEG}
OPTIMIZERS = OneOf(tuple(Ctor(n, {**_OPT_COMMON, **extra}, ("lr",)) for n, extra in [
    ("adam", {"beta1": DECAY, "beta2": DECAY}), ("adamw", {"beta1": DECAY, "beta2": DECAY}),
    ("optimistic_adam", {"beta1": DECAY, "beta2": DECAY}),  # extension (docs/decisions.md)
    ("sgd", {"momentum": DECAY}), ("rmsprop", {"momentum": DECAY}),
]))

# extension (docs/decisions.md): the rate as a function of the step, applied to every optimizer
LR_SCHEDULES = OneOf((
    Ctor("constant"),
    Ctor("cosine", {"warmup": NONNEG_INT, "final": PROB}),
    Ctor("step", {"at": PROB, "factor": POS}, ("at", "factor")),
))
LR_SCHEDULE_CTORS = {c.name: c for c in LR_SCHEDULES.alternatives}

_GENERATED = {"n": POS_INT, "seed": NONNEG_INT}
DATASET_SCHEMAS: dict[str, Ctor] = {
    **{name: Ctor(name, dict(_GENERATED)) for name in DATASETS - {"binarized_mnist", "samples"}},
    "binarized_mnist": Ctor("binarized_mnist", {"scale": AnyValue("[a, b]"), "n": POS_INT}),
    "samples": Ctor("samples", {"model": AnyValue("model"), **_GENERATED}, ("model", "n", "seed"),
                    required=("model",), bare_ok=False),
}

FIT_KEYS = {
    "method": AnyValue("method"),          # validated against METHODS and the model
    "data": AnyValue("data set"),          # validated against DATASET_SCHEMAS or a path string
    "optimizer": OPTIMIZERS,
    "critic_optimizer": OPTIMIZERS,
    "batch_size": POS_INT,
    "epochs": POS_INT,
    "max_steps": POS_INT,
    "seed": NONNEG_INT,
    "ema": DECAY,
    "grad_clip": POS,
    "heldout": POS_INT,                    # extension: size of a generated held-out split
    "lr_schedule": LR_SCHEDULES,           # extension: see docs/decisions.md
    "patience": POS_INT,                   # extension: early stopping on the held-out split
    "validate_every": POS_INT,             # extension: steps between held-out checks
}
SAMPLE_KEYS = {"method": AnyValue("sample method"), "n": POS_INT, "seed": NONNEG_INT}
