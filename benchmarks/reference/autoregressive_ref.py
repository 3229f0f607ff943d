"""Hand-written PyTorch FVSBN, NADE, MADE and PixelCNN on binarized MNIST: the same
architecture, optimizer (Adam), batch and loss (-mean log p) as `dgm fit` on
specs/{fvsbn,nade,made,pixelcnn}.dgm; the speed benchmark's reference.

Usage: python benchmarks/reference/autoregressive_ref.py --model nade|made|pixelcnn|fvsbn
           --steps N --batch-size B [--device cpu|cuda] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # data loading only

from dgmdsl.data import load_binarized_mnist  # noqa: E402

__all__ = ["FVSBN", "NADE", "MADE", "PixelCNN", "MODELS", "main"]

D = 784


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


class FVSBN(nn.Module):
    """One logistic regression per pixel on all earlier pixels (a strictly lower-triangular weight)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(D, D)
        self.register_buffer("mask", torch.ones(D, D).tril(-1))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob(F.linear(x, self.linear.weight * self.mask, self.linear.bias), x)


class NADE(nn.Module):
    """Tied input weights: the hidden pre-activation of pixel d is c + sum_{e<d} W_e x_e."""

    def __init__(self, hidden: int = 500) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(D, hidden).uniform_(-D ** -0.5, D ** -0.5))
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.empty(D, hidden).uniform_(-hidden ** -0.5, hidden ** -0.5))
        self.b = nn.Parameter(torch.zeros(D))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        contributions = x.unsqueeze(-1) * self.W              # [B, D, H]
        before = contributions.cumsum(1) - contributions      # exclusive prefix sum
        h = torch.sigmoid(before + self.c)
        logits = (h * self.V).sum(-1) + self.b
        return bernoulli_log_prob(logits, x)


class MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Germain et al.: input degrees 1..D, hidden degrees in 1..D-1, output d reads degrees < d."""

    def __init__(self, hidden: int = 500, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.arange(1, D + 1)
        units = torch.randint(1, D, (hidden,), generator=generator)
        self.hidden = MaskedLinear(D, hidden, units[:, None] >= inputs[None, :])
        self.out = MaskedLinear(hidden, D, inputs[:, None] > units[None, :])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_log_prob(self.out(F.relu(self.hidden(x))), x)


class MaskedConv2d(nn.Conv2d):
    """Single-channel images: mask A hides the centre tap, mask B keeps it."""

    def __init__(self, n_in: int, n_out: int, kernel: int, kind: str) -> None:
        super().__init__(n_in, n_out, kernel, padding=kernel // 2)
        mask = torch.zeros_like(self.weight)
        centre = kernel // 2
        mask[:, :, :centre] = 1
        mask[:, :, centre, : centre + (kind == "B")] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = MaskedConv2d(channels, channels // 2, 1, "B")
        self.spatial = MaskedConv2d(channels // 2, channels // 2, 3, "B")
        self.expand = MaskedConv2d(channels // 2, channels, 1, "B")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial(F.relu(self.reduce(F.relu(x))))
        return x + self.expand(F.relu(y))


class PixelCNN(nn.Module):
    """7x7 mask-A layer, layers - 1 residual blocks, two ReLU + 1x1 mask-B output layers."""

    def __init__(self, layers: int = 8, channels: int = 64) -> None:
        super().__init__()
        self.first = MaskedConv2d(1, channels, 7, "A")
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(layers - 1)))
        self.head = MaskedConv2d(channels, channels, 1, "B")
        self.out = MaskedConv2d(channels, 1, 1, "B")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.first(x.view(-1, 1, 28, 28)))
        logits = self.out(F.relu(self.head(F.relu(h))))
        return bernoulli_log_prob(logits.view(-1, D), x)


MODELS = {"fvsbn": FVSBN, "nade": NADE, "made": MADE, "pixelcnn": PixelCNN}
# the specs' learning rates (nade.dgm sets 5e-4; the others use the family default)
LEARNING_RATES = {"fvsbn": 1e-3, "nade": 5e-4, "made": 1e-3, "pixelcnn": 1e-3}


def train(model_name: str, steps: int, batch_size: int, device: torch.device, data_dir: str | None) -> float:
    torch.manual_seed(0)
    images = torch.from_numpy(load_binarized_mnist("train", data_dir)).to(device)
    model = MODELS[model_name]().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATES[model_name])
    per_epoch = math.ceil(len(images) / batch_size)
    losses = []
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(images), device=device)
        start = (step % per_epoch) * batch_size
        x = images[order[start:start + batch_size]].float()
        loss = -model.log_prob(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return float(torch.stack(losses[-10:]).mean()) if losses else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    loss = train(args.model, args.steps, args.batch_size, torch.device(args.device), args.data_dir)
    print(f"{args.model}: {args.steps} steps, final loss {loss:.3f}")


if __name__ == "__main__":
    main()
