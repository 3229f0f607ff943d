"""The built-ins of the language, one row each: types, distributions, functions, nets,
flow layers, data sets. Methods and their options live in `options_schema.py`.

To add a distribution: add a `DistInfo` row to DISTRIBUTIONS (and its torch constructor in
the backends' distribution table). To add a net or a flow layer: one row here, one
builder in `dgmdsl.nn`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "TYPES", "DISCRETE_TYPES", "DistInfo", "DISTRIBUTIONS", "FAMILY_CONSTRUCTS", "AR_FAMILIES",
    "FUNCTIONS", "ELEMENTWISE", "NetCtor", "NETS", "FLOW_LAYERS", "ACTIVATIONS", "NET_INITS", "DATASETS",
    "TOY_DATASETS", "support_fits", "SUPPORT_WORDS",
]

# type name -> (takes a K argument, value set)
TYPES: dict[str, bool] = {
    "binary": False, "cat": True, "ordinal": True, "real": False, "positive": False, "unit": False,
    "count": False,  # extension: non-negative integers (Poisson)
}
DISCRETE_TYPES = {"binary", "cat", "ordinal", "count"}
SUPPORT_WORDS = {
    "binary": "binary {0, 1}", "categorical": "categorical", "count": "a count {0, 1, 2, ...}",
    "real": "real-valued", "positive": "positive", "unit": "in (0, 1)", "ordinal": "ordinal",
}


@dataclass(frozen=True)
class DistInfo:
    name: str
    params: tuple[str, ...]             # positional order, as torch.distributions
    support: str                        # binary | categorical | count | real | positive | unit | ordinal
    exclusive: tuple[tuple[str, ...], ...] = ()  # groups where exactly one is given (probs | logits)
    head_widths: dict[str, int] = field(default_factory=dict)  # outputs per element when a net is the head
    takes_k: bool = False               # MixtureOfGaussians(K): a structural argument
    per_value: tuple[str, ...] = ()     # parameters with a trailing axis of K entries

    @property
    def discrete(self) -> bool:
        return self.support in ("binary", "categorical", "count", "ordinal")


DISTRIBUTIONS: dict[str, DistInfo] = {d.name: d for d in [
    DistInfo("Bernoulli", ("probs", "logits"), "binary", (("probs", "logits"),), {"logits": 1}),
    DistInfo("Categorical", ("probs", "logits"), "categorical", (("probs", "logits"),), {"logits": -1},
             per_value=("probs", "logits")),
    DistInfo("Normal", ("loc", "scale"), "real", (), {"loc": 1, "scale": 1}),
    DistInfo("LogNormal", ("loc", "scale"), "positive", (), {"loc": 1, "scale": 1}),
    DistInfo("Laplace", ("loc", "scale"), "real", (), {"loc": 1, "scale": 1}),
    DistInfo("StudentT", ("df", "loc", "scale"), "real", (), {"df": 1, "loc": 1, "scale": 1}),
    DistInfo("Beta", ("concentration1", "concentration0"), "unit", (),
             {"concentration1": 1, "concentration0": 1}),
    DistInfo("Gamma", ("concentration", "rate"), "positive", (), {"concentration": 1, "rate": 1}),
    DistInfo("Exponential", ("rate",), "positive", (), {"rate": 1}),
    DistInfo("Poisson", ("rate",), "count", (), {"rate": 1}),
    DistInfo("MixtureOfGaussians", ("logits", "loc", "scale"), "real", (),
             {"logits": -1, "loc": -1, "scale": -1}, takes_k=True, per_value=("logits", "loc", "scale")),
    DistInfo("DiscretizedLogistic", ("loc", "scale"), "ordinal", (), {"loc": 1, "scale": 1}),
]}

# The family constructs of LANGUAGE.md §5: not plain distributions.
FAMILY_CONSTRUCTS = {"Autoregressive", "Energy", "Diffusion", "ScoreModel", "DDPM"}
AR_FAMILIES = {"Bernoulli": "binary", "Categorical": "categorical",
               "MixtureOfGaussians": "real", "DiscretizedLogistic": "ordinal"}

ELEMENTWISE = {"sqrt", "exp", "log", "softplus", "sigmoid", "tanh"}
FUNCTIONS = ELEMENTWISE | {"sum", "table", "linear", "nearest"}


@dataclass(frozen=True)
class NetCtor:
    name: str
    options: dict[str, str]   # option -> kind: int | ints | act | embedding | init
    images: bool = False      # works on [C, H, W] data


NETS: dict[str, NetCtor] = {n.name: n for n in [
    NetCtor("MLP", {"hidden": "ints", "act": "act", "time_embedding": "embedding", "init": "init"}),
    NetCtor("Linear", {}),
    NetCtor("Conv", {"channels": "ints", "kernel": "int", "act": "act", "time_embedding": "embedding"}, True),
    NetCtor("UNet", {"channels": "ints", "time_embedding": "embedding"}, True),
    NetCtor("MADE", {"hidden": "ints", "masks": "int", "act": "act"}),
    NetCtor("NADE", {"hidden": "int", "act": "act"}),
    NetCtor("PixelCNN", {"layers": "int", "channels": "int"}, True),
]}

# `init` of an MLP: torch's default nn.Linear initialisation, or He et al. (2015)
NET_INITS = {"default", "he"}

ACTIVATIONS = {"relu", "swish", "silu", "tanh", "sigmoid", "elu", "gelu", "leaky_relu", "softplus"}

# layer -> {option: kind}; kinds: net | mask | perm | float | int
FLOW_LAYERS: dict[str, dict[str, str]] = {
    "additive_coupling": {"mask": "mask", "net": "net"},
    "affine_coupling": {"mask": "mask", "net": "net"},
    "spline_coupling": {"mask": "mask", "net": "net", "bins": "int", "bound": "float"},
    "maf": {"net": "net"},
    "iaf": {"net": "net"},
    "actnorm": {},
    "batchnorm": {"momentum": "float"},
    "scale": {},
    "permute": {"order": "perm"},
    "lu_linear": {},
    "logit": {"alpha": "float"},
    "sigmoid": {},
}

# fit options that only some families read; elsewhere they are an error, not ignored
# (the score-based families keep an EMA of their net; only an implicit model has a critic)
FAMILY_FIT_OPTIONS = {
    "ema": ("diffusion", "score", "ddpm"),
    "critic_optimizer": ("implicit",),
}

TOY_DATASETS = {"moons", "eight_gaussians", "grid_25_gaussians", "checkerboard", "two_spirals",
                "swiss_roll", "rings", "gaussian_mixture_8d", "logistic_toy"}
DATASETS = TOY_DATASETS | {"binarized_mnist", "samples"}

# A support fits a declared type when every value it can produce is a value of the type.
_FITS = {
    "binary": {"binary", "cat", "ordinal", "count"},
    "categorical": {"cat", "ordinal"},
    "ordinal": {"ordinal", "cat"},
    "count": {"count"},
    "real": {"real"},
    "positive": {"positive", "real"},
    "unit": {"unit", "positive", "real"},
}


def support_fits(support: str, type_name: str) -> bool:
    return type_name in _FITS.get(support, set())
