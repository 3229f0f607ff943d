"""Element-wise layers: actnorm, scale, batchnorm, logit and sigmoid."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions.transforms import BatchNorm
from torch import Tensor, nn

from .base import FlowLayer, apply_pyro

__all__ = ["ActNorm", "Scale", "BatchNormLayer", "Logit", "Sigmoid"]


class Scale(FlowLayer):
    """`x = exp(log_scale) * z`; log-det = sum of log-scales."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp(), self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self.log_scale).exp(), -self.log_scale.sum().expand(x.shape[:-1])


class ActNorm(Scale):
    """`x = exp(log_scale) * z + bias`, initialised from data (Glow).

    The first batch seen in the x -> z direction sets `bias` to its mean and
    `log_scale` to its log-std, so that the layer's z output is standardised.
    This happens in `initialize`, or lazily on the first training-mode inverse.
    The `initialized` flag is a buffer, so a loaded checkpoint is not re-initialised.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and scale from a batch `x` of this layer's x-side inputs."""
        flat = x.reshape(-1, x.size(-1))
        if flat.size(0) < 2:
            raise ValueError("actnorm initialisation needs a batch of at least 2 examples")
        self.bias.copy_(flat.mean(0))
        self.log_scale.copy_(flat.std(0).clamp_min(1e-6).log())
        self.initialized.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x, log_det = super().forward(z)
        return x + self.bias, log_det

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        return super().inverse(x - self.bias)


class BatchNormLayer(FlowLayer):
    """Pyro's `BatchNorm`: normalises in the x -> z direction.

    In training mode the inverse uses batch statistics (and updates the moving
    averages); the forward always uses the moving averages, so the two are exact
    inverses only in eval mode.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = BatchNorm(dim, momentum=momentum, epsilon=eps)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self.norm(z)
        # Pyro's log-det reads batch statistics in training mode, but this
        # direction always applies the moving ones: use those for consistency.
        norm = self.norm
        log_det = 0.5 * torch.log(norm.moving_variance + norm.epsilon) - norm.constrained_gamma.log()
        return x, log_det.sum(-1).expand(z.shape[:-1])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return apply_pyro(self.norm, x, inverse=True)


class Sigmoid(FlowLayer):
    """`x = sigmoid(z)` onto (0, 1); its inverse is the logit."""

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        # log sigmoid'(z) = log sigmoid(z) + log sigmoid(-z), stable for large |z|.
        log_det = -(F.softplus(z) + F.softplus(-z)).sum(-1)
        return torch.sigmoid(z), log_det

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_x, log_1mx = torch.log(x), torch.log1p(-x)
        return log_x - log_1mx, -(log_x + log_1mx).sum(-1)


class Logit(Sigmoid):
    """RealNVP's logit data transform, `z = logit(alpha + (1 - 2 alpha) x)` for x in [0, 1].

    Named after its x -> z (data-side) direction; as a z -> x layer it is a
    squeezed sigmoid, so bounded data at 0 or 1 keeps a finite density.
    """

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"logit alpha must lie in [0, 0.5), got {alpha}")
        self.alpha = alpha
        self._log_squeeze = math.log1p(-2.0 * alpha)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u, log_det = super().forward(z)
        squeeze_log_det = z.size(-1) * self._log_squeeze
        return (u - self.alpha) / (1.0 - 2.0 * self.alpha), log_det - squeeze_log_det

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, log_det = super().inverse(self.alpha + (1.0 - 2.0 * self.alpha) * x)
        return z, log_det + x.size(-1) * self._log_squeeze
