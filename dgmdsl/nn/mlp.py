"""Plain fully connected networks, optionally conditioned on a time or noise level."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLP", "SinusoidalEmbedding", "TimeConditionedMLP", "he_init_", "make_activation"]


class Swish(nn.Module):
    """x * sigmoid(x); kept as a module so `act = swish` is one registry row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "swish": Swish,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}") from None


def he_init_(net: nn.Module) -> nn.Module:
    """He et al. (2015) in place: weights N(0, 2 / fan-in) for every Linear but the last,
    N(0, 1 / fan-in) for the last (no activation follows it), zero biases. torch's own
    default draws weights ~2.4x smaller, which makes Adam's fixed-size steps large
    relative to them."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, layer in enumerate(linears):
            gain = 1.0 if i == len(linears) - 1 else math.sqrt(2.0)
            layer.weight.normal_(0.0, gain / math.sqrt(layer.in_features))
            if layer.bias is not None:
                layer.bias.zero_()
    return net


class MLP(nn.Sequential):
    """in_features -> hidden... -> out_features, activation between layers, none at the end.
    `init`: "default" (torch's nn.Linear initialisation) or "he" (he_init_)."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (64, 64),
                 act: str = "relu", init: str = "default") -> None:
        widths = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(make_activation(act))
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features
        if init == "he":
            he_init_(self)
        elif init != "default":
            raise ValueError(f"unknown initialisation {init!r}; known: default, he")


class SinusoidalEmbedding(nn.Module):
    """Transformer-style embedding of a scalar in [0, 1] (time or noise level)."""

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError("time_embedding must be at least 2")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # t is scaled to [0, 1]; multiply by 1000 so low frequencies still resolve small steps.
        angles = (1000.0 * t.reshape(-1, 1)) * self.freqs
        emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        if self.dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb


class TimeConditionedMLP(nn.Module):
    """MLP over [x, t]: t enters as one scaled input, or as a sinusoidal embedding of width k."""

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = (128, 128),
                 act: str = "relu", time_embedding: int | None = None, init: str = "default") -> None:
        super().__init__()
        self.embed = SinusoidalEmbedding(time_embedding) if time_embedding else None
        t_width = time_embedding if time_embedding else 1
        self.body = MLP(in_features + t_width, out_features, hidden, act, init)
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x.dtype).reshape(-1, 1).expand(x.shape[0], 1)
        t_in = self.embed(t) if self.embed is not None else t
        return self.body(torch.cat([x, t_in], dim=-1))
