"""Hand-written PyTorch DDPM and VP score SDE, the same MLPs, time input, losses, optimizer
and batches as `specs/ddpm.dgm` and `specs/score_sde.dgm` fitted by `dgm fit`: the speed
benchmark's reference.

Usage: python benchmarks/reference/diffusion_ref.py --model ddpm|score_sde --steps N --batch-size B
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # data loading only

from dgmdsl.data import toy_dataset  # noqa: E402

__all__ = ["TimeMLP", "ddpm_loss", "vp_sde_loss", "main"]

SETTINGS = {  # data set, hidden widths
    "ddpm": ("swiss_roll", [128, 128, 128]),
    "score_sde": ("checkerboard", [256, 256, 256]),
}
T, BETA_START, BETA_END = 1000, 1e-4, 0.02      # ddpm.dgm
BETA_0, BETA_1, EPS = 0.1, 20.0, 1e-5           # score_sde.dgm's beta(t) and t ~ U[EPS, 1]


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class TimeMLP(nn.Module):
    """An MLP on [x, t]: the time (in [0, 1]) is one more input column."""

    def __init__(self, dim: int, hidden: list[int]) -> None:
        super().__init__()
        widths = [dim + 1, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), Swish()]
        self.body = nn.Sequential(*layers, nn.Linear(widths[-1], dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x, t[:, None]], dim=-1))


def ddpm_loss(net: TimeMLP, x0: torch.Tensor, alpha_bars: torch.Tensor) -> torch.Tensor:
    """Ho et al.'s simple loss, the net fed (t + 1) / T."""
    t = torch.randint(0, T, (len(x0),))
    noise = torch.randn_like(x0)
    alpha_bar = alpha_bars[t].to(x0.dtype)[:, None]
    xt = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
    return (net(xt, (t + 1).to(x0.dtype) / T) - noise).pow(2).mean()


def vp_sde_loss(net: TimeMLP, x0: torch.Tensor) -> torch.Tensor:
    """DSM with the variance weighting; the score is net(x_t, t) / std(t)."""
    t = EPS + (1 - EPS) * torch.rand(len(x0))
    z = torch.randn_like(x0)
    log_mean = -0.25 * t**2 * (BETA_1 - BETA_0) - 0.5 * t * BETA_0
    std = (1 - torch.exp(2 * log_mean)).sqrt()[:, None]
    score = net(log_mean.exp()[:, None] * x0 + std * z, t) / std
    return 0.5 * (std * score + z).pow(2).sum(dim=1).mean()


def train(model: str, steps: int, batch_size: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    name, hidden = SETTINGS[model]
    data = torch.from_numpy(toy_dataset(name, n=50_000, seed=0)["x"])
    net = TimeMLP(data.shape[1], hidden)
    alpha_bars = torch.cumprod(1 - torch.linspace(BETA_START, BETA_END, T, dtype=torch.float64), dim=0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    order, position, loss = torch.randperm(len(data), generator=generator), 0, torch.zeros(())
    for _ in range(steps):
        if position >= len(data):
            order, position = torch.randperm(len(data), generator=generator), 0
        batch = data[order[position:position + batch_size]]
        position += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = ddpm_loss(net, batch, alpha_bars) if model == "ddpm" else vp_sde_loss(net, batch)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    print(f"final loss {train(args.model, args.steps, args.batch_size):.4f}")


if __name__ == "__main__":
    main()
