"""Per-position families: the distribution of one coordinate given its parameters.

Every family reads ``P = params_per_position`` unconstrained numbers per
position and offers ``log_prob(params[B, D, P], x[B, D]) -> [B, D]`` and
``sample(params[B, P]) -> [B]``. ``encode`` turns values into the features a
conditioner reads (``[B, D] -> [B, D, input_features]``).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PositionFamily",
    "Bernoulli",
    "Categorical",
    "MixtureOfGaussians",
    "DiscretizedLogistic",
    "FAMILIES",
    "make_family",
]


def _uniform(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def _pick_by_inverse_cdf(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """Index drawn from each row of ``probs[B, K]`` with one uniform per row."""
    u = _uniform(probs.shape[:-1], probs, generator).unsqueeze(-1)
    # Counting how many cumulative masses lie below u gives the drawn index;
    # the clamp guards against round-off leaving the last cumulative below 1.
    index = (probs.cumsum(-1) <= u).sum(-1)
    return index.clamp_(max=probs.shape[-1] - 1)


def _check_levels(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} needs an integer K >= {minimum}, got K = {value!r}")
    return value


class PositionFamily:
    """Base class: one conditional distribution per position."""

    name: str = ""
    params_per_position: int = 1
    input_features: int = 1

    def encode(self, x: Tensor) -> Tensor:
        """Conditioner features of floating values ``x[B, D]`` -> ``[B, D, F]`` (may be a view of x)."""
        return x.unsqueeze(-1)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Bernoulli(PositionFamily):
    """Binary values with one logit per position."""

    name = "Bernoulli"

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logits = params[..., 0]
        return -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        logits = params[..., 0]
        return (_uniform(logits.shape, logits, generator) < torch.sigmoid(logits)).to(logits.dtype)


class Categorical(PositionFamily):
    """Values in ``0..K-1`` with K logits per position; fed to conditioners one-hot."""

    name = "Categorical"

    def __init__(self, K: int) -> None:
        self.K = _check_levels("Categorical", K, 2)
        self.params_per_position = self.K
        self.input_features = self.K

    def encode(self, x: Tensor) -> Tensor:
        return F.one_hot(x.long(), self.K).to(x.dtype)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        log_probs = torch.log_softmax(params, dim=-1)
        return log_probs.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return _pick_by_inverse_cdf(torch.softmax(params, -1), generator).to(params.dtype)

    def __repr__(self) -> str:
        return f"Categorical(K={self.K})"


class MixtureOfGaussians(PositionFamily):
    """RNADE's conditional: K mixture logits, K means, K scale parameters.

    Scales are ``softplus(raw) + min_scale``: smooth everywhere (no clamp that
    would stop gradients) and bounded away from zero so the density stays finite.
    """

    name = "MixtureOfGaussians"

    def __init__(self, K: int, min_scale: float = 1e-3) -> None:
        self.K = _check_levels("MixtureOfGaussians", K, 1)
        if not min_scale > 0:
            raise ValueError(f"MixtureOfGaussians needs min_scale > 0, got {min_scale}")
        self.min_scale = float(min_scale)
        self.params_per_position = 3 * self.K

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, means, raw_scales = params.split(self.K, dim=-1)
        return logits, means, F.softplus(raw_scales) + self.min_scale

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logits, means, scales = self._split(params)
        z = (x.to(params.dtype).unsqueeze(-1) - means) / scales
        component = -0.5 * z.square() - scales.log() - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(torch.log_softmax(logits, -1) + component, dim=-1)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        logits, means, scales = self._split(params)
        k = _pick_by_inverse_cdf(torch.softmax(logits, -1), generator).unsqueeze(-1)
        noise = torch.randn(k.shape[:-1], generator=generator, device=params.device, dtype=params.dtype)
        return means.gather(-1, k).squeeze(-1) + scales.gather(-1, k).squeeze(-1) * noise

    def __repr__(self) -> str:
        return f"MixtureOfGaussians(K={self.K})"


class DiscretizedLogistic(PositionFamily):
    """Ordinal values ``0..K-1``: a logistic binned into unit-width bins, open end bins.

    As in PixelCNN++, values are mapped to ``[-1, 1]`` (value k -> 2k/(K-1) - 1)
    and (loc, log_scale) live on that scale, so raw outputs near zero centre the
    distribution. The log-scale is floored at -7.
    """

    name = "DiscretizedLogistic"
    params_per_position = 2
    min_log_scale = -7.0

    def __init__(self, K: int) -> None:
        self.K = _check_levels("DiscretizedLogistic", K, 2)

    def encode(self, x: Tensor) -> Tensor:
        return (x * (2.0 / (self.K - 1)) - 1.0).unsqueeze(-1)

    def _loc_inv_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        return params[..., 0], torch.exp(-params[..., 1].clamp(min=self.min_log_scale))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        loc, inv_scale = self._loc_inv_scale(params)
        x = x.to(params.dtype)
        centred = x * (2.0 / (self.K - 1)) - 1.0 - loc
        half_bin = 1.0 / (self.K - 1)
        upper = (centred + half_bin) * inv_scale
        lower = (centred - half_bin) * inv_scale
        # For a bin [lower, upper]: sigmoid(u) - sigmoid(l)
        #   = sigmoid(u) * sigmoid(-l) * (1 - exp(-(u - l))),
        # exact and free of cancellation; end bins keep only one factor.
        has_upper = x < self.K - 1
        has_lower = x > 0
        zero = torch.zeros((), dtype=params.dtype, device=params.device)
        log_upper = torch.where(has_upper, F.logsigmoid(upper), zero)
        log_lower = torch.where(has_lower, F.logsigmoid(-lower), zero)
        log_width = torch.log(-torch.expm1(-2.0 * half_bin * inv_scale))
        return log_upper + log_lower + torch.where(has_upper & has_lower, log_width, zero)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        loc, inv_scale = self._loc_inv_scale(params)
        tiny = torch.finfo(params.dtype).tiny
        u = _uniform(loc.shape, loc, generator).clamp(min=tiny, max=1 - torch.finfo(params.dtype).eps)
        continuous = loc + (u.log() - torch.log1p(-u)) / inv_scale
        # Bin k covers [k - 1/2, k + 1/2) once mapped back to value units.
        value = torch.round((continuous + 1.0) * ((self.K - 1) / 2.0))
        return value.clamp_(0, self.K - 1)

    def __repr__(self) -> str:
        return f"DiscretizedLogistic(K={self.K})"


FAMILIES: dict[str, type[PositionFamily]] = {
    "Bernoulli": Bernoulli,
    "Categorical": Categorical,
    "MixtureOfGaussians": MixtureOfGaussians,
    "DiscretizedLogistic": DiscretizedLogistic,
}


def make_family(name: str, options: Mapping[str, Any] | None = None) -> PositionFamily:
    """Instantiate a per-position family by name, e.g. ``make_family("Categorical", {"K": 3})``."""
    if name not in FAMILIES:
        raise ValueError(
            f"unknown per-position family {name!r}; Autoregressive supports {', '.join(FAMILIES)}"
        )
    try:
        return FAMILIES[name](**dict(options or {}))
    except TypeError as error:
        raise ValueError(f"bad options {dict(options or {})} for family {name}: {error}") from None
