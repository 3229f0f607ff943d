"""Hand-written PyTorch WGAN-GP with the nets, optimizers, batches and losses of
`specs/wgan_gp.dgm` fitted by `dgm fit`: the speed benchmark's reference.

G: 16 -> 256 -> 256 -> 2 and D: 2 -> 256 -> 256 -> 1 (ReLU); Adam(1e-4, betas 0.5, 0.9)
for both; one step = 5 critic updates, each on its own B data rows (5 B rows a step from
a per-epoch permutation, incomplete tail dropped) and a fresh fake batch, with the
gradient penalty (lambda = 10) on interpolates; then one generator update.

Usage: python benchmarks/reference/wgan_gp_ref.py --steps N --batch-size B
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # data loading only

from dgmdsl.data import toy_dataset  # noqa: E402

__all__ = ["mlp", "penalty", "train", "main"]

LATENT, HIDDEN, CRITIC_STEPS, LAMBDA = 16, [256, 256], 5, 10.0


def mlp(n_in: int, n_out: int, hidden: list[int]) -> nn.Sequential:
    widths = [n_in, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], n_out))


def penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    eps = torch.rand(len(real), 1)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def train(data: torch.Tensor, steps: int, batch_size: int, seed: int = 0) -> float:
    G, D = mlp(LATENT, 2, HIDDEN), mlp(2, 1, HIDDEN)
    g_opt = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
    d_opt = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    rows = CRITIC_STEPS * batch_size
    generator = torch.Generator().manual_seed(seed)
    order, position, g_loss = torch.randperm(len(data), generator=generator), 0, torch.zeros(())
    for _ in range(steps):
        if position + rows > len(data):
            order, position = torch.randperm(len(data), generator=generator), 0
        batch = data[order[position:position + rows]]
        position += rows
        for real in batch.split(batch_size):
            with torch.no_grad():
                fake = G(torch.randn(len(real), LATENT))
            d_loss = D(fake).mean() - D(real).mean() + LAMBDA * penalty(D, real, fake)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = -D(G(torch.randn(batch_size, LATENT))).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        for p in D.parameters():
            p.requires_grad_(True)
    return float(g_loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = torch.from_numpy(toy_dataset("grid_25_gaussians", n=50_000, seed=0)["x"])
    print(f"final generator loss {train(data, args.steps, args.batch_size):.4f}")


if __name__ == "__main__":
    main()
