"""Hand-written PyTorch VAE with the nets, optimizer, batches and loss of `specs/vae.dgm`
fitted by `dgm fit`: the speed benchmark's reference.

Encoder 784-500-500-(50 loc, 50 softplus scale), decoder 50-500-500-784 Bernoulli logits,
both ReLU MLPs; the single-sample ELBO with no closed-form KL:
log p(x | z) + log N(z; 0, I) - log q(z | x) at z = loc + scale * eps; Adam(lr = 1e-3).

Usage: python benchmarks/reference/vae_ref.py --steps N --batch-size B [--data-dir DIR]
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

__all__ = ["VAE", "main"]

LATENT, HIDDEN, PIXELS = 50, 500, 784
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, n_out))


class VAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = mlp(PIXELS, 2 * LATENT)
        self.dec = mlp(LATENT, PIXELS)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Single-sample ELBO per example."""
        loc, raw = self.enc(x).view(len(x), 2, LATENT).unbind(1)
        scale = F.softplus(raw) + 1e-5
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        log_lik = -F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        log_prior = (-0.5 * z * z - HALF_LOG_2PI).sum(-1)
        log_q = (-0.5 * eps * eps - scale.log() - HALF_LOG_2PI).sum(-1)
        return log_lik + log_prior - log_q


def train(model: VAE, data: torch.Tensor, steps: int, batch_size: int, seed: int = 0) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    order, position, loss = torch.randperm(len(data), generator=generator), 0, torch.zeros(())
    for _ in range(steps):
        if position >= len(data):
            order, position = torch.randperm(len(data), generator=generator), 0
        batch = data[order[position:position + batch_size]]
        position += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = -model.elbo(batch).mean()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = torch.from_numpy(load_binarized_mnist("train", args.data_dir)).float()
    print(f"final loss {train(VAE(), data, args.steps, args.batch_size):.4f}")


if __name__ == "__main__":
    main()
