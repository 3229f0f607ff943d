"""Adversarial losses as pure functions of critic outputs, plus critic regularisers.

Every loss reads raw (pre-activation) critic outputs, so one engine drives them
all: `critic_loss(real_out, fake_out)` is minimised by the critic,
`generator_loss(fake_out)` by the generator, and `estimate(real_out, fake_out)`
is the divergence or distance the current critic certifies (what training logs).

For minimax / non_saturating the output is a logit, D(x) = sigmoid(out).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dgmdsl.numerics.fgan import f_gan_bound, get_divergence

__all__ = [
    "DEFAULT_F_DIVERGENCE",
    "LOSSES",
    "AdversarialLoss",
    "clip_weights_",
    "f_gan_loss",
    "gradient_penalty",
    "make_loss",
]

Tensor = torch.Tensor
TensorOrTensors = Tensor | Sequence[Tensor]
DEFAULT_F_DIVERGENCE = "kl"
F_GAN_GENERATOR_FORMS = ("alternative", "saddle")


@dataclass(frozen=True)
class AdversarialLoss:
    """A critic/generator loss pair with the metadata an engine needs."""

    name: str
    critic_loss: Callable[[Tensor, Tensor], Tensor]
    generator_loss: Callable[[Tensor], Tensor]
    estimate: Callable[[Tensor, Tensor], Tensor]
    needs_penalty: bool = False
    needs_clip: bool = False
    default_clip: float | None = None
    default_penalty: float | None = None
    default_critic_steps: int = 1
    divergence: str | None = None


# --- minimax / non-saturating (Goodfellow et al. 2014); -log sigmoid(a) = softplus(-a) ---

def _bce_critic_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
    return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()


def _js_estimate(real_out: Tensor, fake_out: Tensor) -> Tensor:
    # E log D(x) + E log(1 - D(G(z))); equals 2 JSD - log 4 at the optimal critic.
    return -_bce_critic_loss(real_out, fake_out)


def _minimax_generator_loss(fake_out: Tensor) -> Tensor:
    # log(1 - sigmoid(a)) = -softplus(a): the generator minimises E log(1 - D(G(z))).
    return -F.softplus(fake_out).mean()


def _non_saturating_generator_loss(fake_out: Tensor) -> Tensor:
    return F.softplus(-fake_out).mean()


# --- Wasserstein (Arjovsky et al. 2017; Gulrajani et al. 2017) ---

def _wasserstein_estimate(real_out: Tensor, fake_out: Tensor) -> Tensor:
    # Kantorovich-Rubinstein dual; a lower bound on W1 while the critic is 1-Lipschitz.
    return real_out.mean() - fake_out.mean()


def _wasserstein_critic_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
    return -_wasserstein_estimate(real_out, fake_out)


def _mean_negated(fake_out: Tensor) -> Tensor:
    return -fake_out.mean()


# --- hinge (Lim & Ye 2017; Miyato et al. 2018) ---

def _hinge_critic_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
    return F.relu(1.0 - real_out).mean() + F.relu(1.0 + fake_out).mean()


def _hinge_estimate(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """Lower bound on total variation TV(P, Q) = ½∫|p - q|.

    The pointwise-optimal hinge critic is sign(p - q) with loss 2∫min(p, q) =
    2 (1 - TV), so 1 - loss / 2 <= TV for any critic.
    """
    return 1.0 - 0.5 * _hinge_critic_loss(real_out, fake_out)


# --- least squares (Mao et al. 2017), targets real = 1, fake = 0, generator = 1 ---

def _least_squares_critic_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
    return 0.5 * ((real_out - 1.0) ** 2).mean() + 0.5 * (fake_out**2).mean()


def _least_squares_generator_loss(fake_out: Tensor) -> Tensor:
    return 0.5 * ((fake_out - 1.0) ** 2).mean()


def _least_squares_estimate(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """Lower bound on the triangular discrimination Δ(P, Q) = ∫(p - q)² / (p + q) in [0, 2].

    The optimal critic p / (p + q) has loss ½∫pq / (p + q) = (2 - Δ) / 8.
    """
    return 2.0 - 8.0 * _least_squares_critic_loss(real_out, fake_out)


# --- f-GAN (Nowozin et al. 2016) ---

def f_gan_loss(divergence: str = DEFAULT_F_DIVERGENCE,
               generator_form: str = "alternative") -> AdversarialLoss:
    """The f-GAN loss for one divergence (see `dgmdsl.numerics.fgan`).

    The critic maximises F = E_P[g_f(v)] - E_Q[f*(g_f(v))]. generator_form
    "saddle" has the generator minimise F itself; "alternative" (default) has it
    maximise E_Q[g_f(v)], the paper's practical update (its §3), which keeps the
    saddle point and generalises the non-saturating GAN trick.
    """
    div = get_divergence(divergence)
    if generator_form not in F_GAN_GENERATOR_FORMS:
        raise ValueError(f"generator_form must be one of {F_GAN_GENERATOR_FORMS}, got {generator_form!r}")

    def bound(real_out: Tensor, fake_out: Tensor) -> Tensor:
        return f_gan_bound(div, real_out, fake_out)

    def critic_loss(real_out: Tensor, fake_out: Tensor) -> Tensor:
        return -bound(real_out, fake_out)

    def generator_loss(fake_out: Tensor) -> Tensor:
        if generator_form == "saddle":
            # Only the E_Q term of F depends on the generator.
            return -div.conjugate_of_activation(fake_out).mean()
        return -div.activation(fake_out).mean()

    return AdversarialLoss("f_gan", critic_loss, generator_loss, bound, divergence=div.name)


LOSSES: dict[str, AdversarialLoss] = {
    "minimax": AdversarialLoss("minimax", _bce_critic_loss, _minimax_generator_loss, _js_estimate),
    "non_saturating": AdversarialLoss("non_saturating", _bce_critic_loss,
                                      _non_saturating_generator_loss, _js_estimate),
    "wgan": AdversarialLoss("wgan", _wasserstein_critic_loss, _mean_negated, _wasserstein_estimate,
                            needs_clip=True, default_clip=0.01, default_critic_steps=5),
    "wgan_gp": AdversarialLoss("wgan_gp", _wasserstein_critic_loss, _mean_negated,
                               _wasserstein_estimate, needs_penalty=True, default_penalty=10.0,
                               default_critic_steps=5),
    "hinge": AdversarialLoss("hinge", _hinge_critic_loss, _mean_negated, _hinge_estimate),
    "least_squares": AdversarialLoss("least_squares", _least_squares_critic_loss,
                                     _least_squares_generator_loss, _least_squares_estimate),
    # `f_gan` here uses DEFAULT_F_DIVERGENCE; make_loss("f_gan", divergence=...) picks another.
    "f_gan": f_gan_loss(),
}


def make_loss(name: str, **options: object) -> AdversarialLoss:
    """Look up a loss; `f_gan` takes `divergence` and `generator_form`, the others no options."""
    if name not in LOSSES:
        raise ValueError(f"unknown adversarial loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    if name == "f_gan":
        return f_gan_loss(**options)  # type: ignore[arg-type]
    if options:
        raise ValueError(f"loss {name!r} takes no options, got {sorted(options)}")
    return LOSSES[name]


# --- critic regularisers ---

def _as_tuple(x: TensorOrTensors) -> tuple[Tensor, ...]:
    return (x,) if isinstance(x, Tensor) else tuple(x)


def gradient_penalty(critic_fn: Callable[..., Tensor], real: TensorOrTensors,
                     fake: TensorOrTensors, generator: torch.Generator | None = None,
                     target_norm: float = 1.0, eps: Tensor | None = None, one_sided: bool = False) -> Tensor:
    """E[(||∇ critic(x̂)||₂ - target_norm)²] at x̂ = ε x + (1 - ε) x̃ (Gulrajani et al. 2017);
    with `one_sided`, E[max(0, ||∇ critic(x̂)||₂ - target_norm)²] (Petzka et al. 2018), which
    prices only gradients steeper than the target, so a flat critic costs nothing.

    `real`/`fake` may be tuples of tensors (a BiGAN critic reading (x, z)): each
    is interpolated with the same per-example ε and the norm is taken over all
    of them jointly. ε ~ U(0, 1) from `generator`, unless `eps` (shape [n]) is
    given (`generator` must live on the inputs' device). Inputs are detached:
    the penalty regularises the critic only, and the graph through the critic is
    kept (create_graph) so it can be trained on.
    """
    reals, fakes = _as_tuple(real), _as_tuple(fake)
    if len(reals) != len(fakes):
        raise ValueError(f"real has {len(reals)} inputs but fake has {len(fakes)}")
    n = reals[0].shape[0]
    if eps is None:
        eps = torch.rand(n, generator=generator, device=reals[0].device, dtype=reals[0].dtype)
    interpolates = tuple(_interpolate(r, f, eps) for r, f in zip(reals, fakes))
    out = critic_fn(*interpolates)
    grads = torch.autograd.grad(out.sum(), interpolates, create_graph=True)
    squared_norm = sum(g.reshape(n, -1).pow(2).sum(dim=1) for g in grads)
    # The tiny offset keeps sqrt's backward finite where the critic is flat (zero gradient).
    norm = torch.sqrt(squared_norm + torch.finfo(squared_norm.dtype).tiny)
    excess = norm - target_norm
    if one_sided:
        excess = excess.clamp(min=0.0)
    return (excess ** 2).mean()


def _interpolate(real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    eps = eps.to(real.dtype).reshape(-1, *([1] * (real.dim() - 1)))
    mixed = eps * real.detach() + (1.0 - eps) * fake.detach()
    return mixed.requires_grad_(True)


@torch.no_grad()
def clip_weights_(module: nn.Module, clip: float) -> None:
    """Clamp every parameter of `module` to [-clip, clip] in place (WGAN)."""
    for p in module.parameters():
        p.clamp_(-clip, clip)
