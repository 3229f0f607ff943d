"""Hand-written PyTorch WGAN-GP with the nets, optimizers, batches and losses of
`specs/wgan_gp.dgm` fitted by `dgm fit`: the speed benchmark's reference.

G: 16 -> 256 -> 256 -> 2 and D: 2 -> 256 -> 256 -> 1 (ReLU); Adam(1e-3, betas 0, 0.9)
for both; one step = 5 critic updates, each on its own B data rows (5 B rows a step from
a per-epoch permutation, incomplete tail dropped) and a fresh fake batch, with the
one-sided gradient penalty (lambda = 10) on interpolates, dgm's default `penalty_form`;
then one generator update.

Usage: python benchmarks/reference/wgan_gp_ref.py --steps N --batch-size B

Probe options (quality, not the speed benchmark): --lr, --beta1, --beta2, --critic-lr,
--critic-beta1, --generator-optimizer optimistic_adam (dgmdsl's OptimisticAdam for the
generator, the critic keeping Adam), --cosine (decay both steps to 0 over the run), --critic-warmup N (100
critic updates for each of the first N generator updates, as the original WGAN code),
--he-init generator|both (dgmdsl's He et al. 2015 initialisation, `MLP(init = he)`),
--penalty-form two_sided (the paper's (||grad|| - 1)^2; gan-wgan_gp-penalty-form-probe.log) and
--report-every K (modes covered and high-quality fraction of 2000 samples every K steps;
benchmarks/results/gan-wgan_gp-optimizer-probe.log, gan-wgan_gp-lockon-probe.log,
gan-wgan_gp-dynamics-probe.log, gan-wgan_gp-batch-init-probe.log).
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

__all__ = ["mlp", "penalty", "train", "critic_updates", "main"]

LATENT, HIDDEN, CRITIC_STEPS, LAMBDA = 16, [256, 256], 5, 10.0
WARMUP_CRITIC_STEPS = 100  # --critic-warmup: critic updates per generator update


def mlp(n_in: int, n_out: int, hidden: list[int]) -> nn.Sequential:
    widths = [n_in, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], n_out))


def penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, one_sided: bool = True) -> torch.Tensor:
    eps = torch.rand(len(real), 1)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    excess = grad.norm(dim=1) - 1
    return ((excess.clamp(min=0) if one_sided else excess) ** 2).mean()


def train(data: torch.Tensor, steps: int, batch_size: int, seed: int = 0, lr: float = 1e-3,
          beta1: float = 0.0, cosine: bool = False, report_every: int = 0, beta2: float = 0.9,
          critic_lr: float | None = None, critic_beta1: float | None = None, critic_warmup: int = 0,
          generator_optimizer: str = "adam", he: str = "none", one_sided: bool = True) -> float:
    G, D = mlp(LATENT, 2, HIDDEN), mlp(2, 1, HIDDEN)
    if he != "none":  # a probe option: dgmdsl's `MLP(init = he)` weights
        from dgmdsl.nn.mlp import he_init_
        for net in {"generator": (G,), "both": (G, D)}[he]:
            he_init_(net)
    critic_lr = lr if critic_lr is None else critic_lr
    if generator_optimizer == "optimistic_adam":
        from dgmdsl.numerics.optimistic_adam import OptimisticAdam
        g_opt = OptimisticAdam(G.parameters(), lr=lr, betas=(beta1, beta2))
    else:
        g_opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, beta2))
    d_opt = torch.optim.Adam(D.parameters(), lr=critic_lr,
                             betas=(beta1 if critic_beta1 is None else critic_beta1, beta2))
    rows = CRITIC_STEPS * batch_size
    generator = torch.Generator().manual_seed(seed)
    order, position, g_loss = torch.randperm(len(data), generator=generator), 0, torch.zeros(())
    for step in range(steps):
        if cosine:
            decay = 0.5 * (1 + math.cos(math.pi * step / steps))
            for group in g_opt.param_groups:
                group["lr"] = lr * decay
            for group in d_opt.param_groups:
                group["lr"] = critic_lr * decay
        for _ in range(WARMUP_CRITIC_STEPS // CRITIC_STEPS if step < critic_warmup else 1):
            if position + rows > len(data):
                order, position = torch.randperm(len(data), generator=generator), 0
            batch = data[order[position:position + rows]]
            position += rows
            critic_updates(G, D, d_opt, batch.split(batch_size), one_sided)
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = -D(G(torch.randn(batch_size, LATENT))).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        for p in D.parameters():
            p.requires_grad_(True)
        if report_every and (step + 1) % report_every == 0:
            report(G, step + 1)
    return float(g_loss.detach())


def critic_updates(G: nn.Module, D: nn.Module, d_opt: torch.optim.Optimizer, reals, one_sided: bool = True) -> None:
    for real in reals:
        with torch.no_grad():
            fake = G(torch.randn(len(real), LATENT))
        d_loss = D(fake).mean() - D(real).mean() + LAMBDA * penalty(D, real, fake, one_sided)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()


@torch.no_grad()
def report(G: nn.Module, step: int) -> None:
    from dgmdsl.data import toy_modes
    from dgmdsl.numerics.sample_metrics import mode_coverage
    modes, std = toy_modes("grid_25_gaussians")
    found = mode_coverage(G(torch.randn(2000, LATENT)), torch.as_tensor(modes), std)
    print(f"step {step}: {found['modes_covered']}/25 modes, high quality {found['high_quality_fraction']:.3f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta1", type=float, default=0.0)
    parser.add_argument("--beta2", type=float, default=0.9)
    parser.add_argument("--critic-lr", type=float, default=None, help="default: --lr")
    parser.add_argument("--critic-beta1", type=float, default=None, help="default: --beta1")
    parser.add_argument("--critic-warmup", type=int, default=0)
    parser.add_argument("--generator-optimizer", choices=("adam", "optimistic_adam"), default="adam")
    parser.add_argument("--he-init", choices=("none", "generator", "both"), default="none")
    parser.add_argument("--penalty-form", choices=("one_sided", "two_sided"), default="one_sided")
    parser.add_argument("--cosine", action="store_true")
    parser.add_argument("--report-every", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data = torch.from_numpy(toy_dataset("grid_25_gaussians", n=50_000, seed=0)["x"])
    loss = train(data, args.steps, args.batch_size, seed=args.seed, lr=args.lr, beta1=args.beta1, cosine=args.cosine,
                 report_every=args.report_every, beta2=args.beta2, critic_lr=args.critic_lr,
                 critic_beta1=args.critic_beta1, critic_warmup=args.critic_warmup,
                 generator_optimizer=args.generator_optimizer, he=args.he_init,
                 one_sided=args.penalty_form == "one_sided")
    print(f"final generator loss {loss:.4f}")


if __name__ == "__main__":
    main()
