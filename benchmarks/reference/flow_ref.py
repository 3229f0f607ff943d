"""Hand-written PyTorch RealNVP and MAF, the same layers, optimizer, batches and loss as
`specs/realnvp.dgm` and `specs/maf.dgm` fitted by `dgm fit`: the speed benchmark's reference.

Usage: python benchmarks/reference/flow_ref.py --model realnvp|maf --steps N --batch-size B
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # data loading only

from dgmdsl.data import toy_dataset  # noqa: E402

__all__ = ["RealNVP", "MAF", "main"]

LOG_SCALE_MIN, LOG_SCALE_MAX = -5.0, 3.0  # the clip of the affine layers (values only)


def clip(log_scale: torch.Tensor) -> torch.Tensor:
    """Clamp the value, keep the gradient of the identity."""
    return log_scale + (log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX) - log_scale).detach()


def mlp(n_in: int, n_out: int, hidden: list[int]) -> nn.Sequential:
    widths = [n_in, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], n_out))


class RealNVP(nn.Module):
    """6 x (affine coupling of one half given the other, then reverse), then actnorm."""

    def __init__(self, dim: int = 2, couplings: int = 6, hidden: list[int] = (64, 64)) -> None:
        super().__init__()
        self.kept = dim - dim // 2  # alternate mask on 2-D: keep one, transform the other
        self.nets = nn.ModuleList(mlp(self.kept, 2 * (dim - self.kept), list(hidden)) for _ in range(couplings))
        self.act_log_scale = nn.Parameter(torch.zeros(dim))
        self.act_bias = nn.Parameter(torch.zeros(dim))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.act_bias) * torch.exp(-self.act_log_scale)
        log_det = -self.act_log_scale.sum().expand(len(x))
        for net in reversed(self.nets):
            z = z.flip(-1)  # permute(reverse) is its own inverse
            kept, moved = z[:, : self.kept], z[:, self.kept:]
            shift, log_scale = net(kept).chunk(2, dim=-1)
            log_scale = clip(log_scale)
            z = torch.cat([kept, (moved - shift) * torch.exp(-log_scale)], dim=-1)
            log_det = log_det - log_scale.sum(-1)
        return standard_normal_log_prob(z) + log_det


class MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.mask * self.weight, self.bias)


class MADE(nn.Module):
    """Natural-order MADE with (shift, log_scale) outputs per dimension."""

    def __init__(self, dim: int, hidden: list[int]) -> None:
        super().__init__()
        degrees = [torch.arange(1, dim + 1, dtype=torch.float32)]
        degrees += [torch.round(torch.linspace(1, dim - 1, steps=h)) for h in hidden]
        layers = [MaskedLinear(a.numel(), b.numel(), (b[:, None] >= a[None, :]).float())
                  for a, b in zip(degrees[:-1], degrees[1:])]
        out_degrees = degrees[0].repeat(2)
        self.hidden = nn.ModuleList(layers)
        self.out = MaskedLinear(degrees[-1].numel(), 2 * dim, (out_degrees[:, None] > degrees[-1][None, :]).float())
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        shift, log_scale = self.out(x).view(len(x), 2, self.dim).unbind(1)
        return shift, log_scale


class MAF(nn.Module):
    """5 x (MADE affine layer, then a seeded random permutation)."""

    def __init__(self, dim: int = 8, layers: int = 5, hidden: list[int] = (128, 128), seed: int = 0) -> None:
        super().__init__()
        self.mades = nn.ModuleList(MADE(dim, list(hidden)) for _ in range(layers))
        perms = [torch.randperm(dim, generator=torch.Generator().manual_seed(seed + i)) for i in range(layers)]
        self.register_buffer("inverse_perms", torch.stack([torch.argsort(p) for p in perms]))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        log_det = x.new_zeros(len(x))
        for made, inverse_perm in zip(reversed(self.mades), reversed(self.inverse_perms)):
            x = x[:, inverse_perm]
            shift, log_scale = made(x)
            log_scale = clip(log_scale)
            x = torch.exp(log_scale) * x + shift
            log_det = log_det + log_scale.sum(-1)
        return standard_normal_log_prob(x) + log_det


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z * z).sum(-1) - 0.5 * z.size(-1) * math.log(2 * math.pi)


def data_for(name: str) -> torch.Tensor:
    if name == "realnvp":
        return torch.from_numpy(toy_dataset("moons", n=20_000, seed=0)["x"])
    return torch.from_numpy(toy_dataset("gaussian_mixture_8d", n=50_000, seed=0)["x"])


def train(model: nn.Module, data: torch.Tensor, steps: int, batch_size: int, seed: int = 0) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    order, position, loss = torch.randperm(len(data), generator=generator), 0, torch.zeros(())
    for _ in range(steps):
        if position >= len(data):
            order, position = torch.randperm(len(data), generator=generator), 0
        batch = data[order[position:position + batch_size]]
        position += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = -model.log_prob(batch).mean()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["realnvp", "maf"], required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = data_for(args.model)
    model = RealNVP() if args.model == "realnvp" else MAF()
    if args.model == "realnvp":  # actnorm's data-dependent initialisation, as `dgm fit` does
        with torch.no_grad():
            model.act_bias.copy_(data.mean(0))
            model.act_log_scale.copy_(data.std(0).log())
    print(f"final loss {train(model, data, args.steps, args.batch_size):.4f}")


if __name__ == "__main__":
    main()
