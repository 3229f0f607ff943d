"""Noise- and flow-contrastive estimation of energy-based models.

Both fit p(x) = exp(-E(x) - log_z), with log_z a learned scalar, by logistic classification
of data against samples of a second density q. With nu samples of q per data point the
log-odds that x is data are G(x) = log p(x) - log q(x) - log nu (Gutmann & Hyvarinen 2010),
and the loss per data point is  mean_data softplus(-G) + nu * mean_q softplus(G).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution

from dgmdsl.numerics.score_matching import EnergyFn, per_example_energy

__all__ = ["nce_loss", "fce_loss"]


def _per_example(log_prob: Tensor, n: int) -> Tensor:
    """Sum any trailing dims of a log-density, so factorised noise works without Independent."""
    return log_prob.reshape(n, -1).sum(1)


def _noise_sample_shape(noise_dist: Distribution, n: int, x_data: Tensor) -> tuple[int, ...]:
    """Sample shape that makes noise_dist's draws look like n rows of x_data.

    The distribution's batch + event shape must be a trailing part of one data row's shape;
    the remaining leading dims are drawn iid (so a scalar Normal(0, 3) noises every coordinate).
    """
    row = tuple(x_data.shape[1:])
    dist_shape = tuple(noise_dist.batch_shape + noise_dist.event_shape)
    n_extra = len(row) - len(dist_shape)
    if n_extra < 0 or row[n_extra:] != dist_shape:
        raise ValueError(f"noise distribution of shape {list(dist_shape)} does not fit data rows "
                         f"of shape {list(row)}")
    return (n, *row[:n_extra])


def _sample_noise(noise_dist: Distribution, sample_shape: tuple[int, ...],
                  generator: torch.Generator | None) -> Tensor:
    """noise_dist.sample(sample_shape), reproducible from `generator` when one is given.

    torch.distributions draw from the global RNG, so the draw runs on a forked global state
    seeded from the generator; the caller's global RNG state is left untouched.
    """
    if generator is None:
        return noise_dist.sample(sample_shape)
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.random.default_generator.manual_seed(seed)
        if cuda_devices:
            torch.cuda.manual_seed_all(seed)
        return noise_dist.sample(sample_shape)


def _classification_loss(logit_data: Tensor, logit_noise: Tensor,
                         noise_ratio: int) -> tuple[Tensor, Tensor]:
    """(logistic loss per data point, detached accuracy of the rule G > 0 => data)."""
    loss = F.softplus(-logit_data).mean() + noise_ratio * F.softplus(logit_noise).mean()
    correct = (logit_data > 0).sum() + (logit_noise < 0).sum()
    accuracy = correct.to(logit_data.dtype) / (logit_data.numel() + logit_noise.numel())
    return loss, accuracy.detach()


def _check_ratio(noise_ratio: int) -> None:
    if int(noise_ratio) != noise_ratio or noise_ratio < 1:
        raise ValueError(f"noise_ratio must be a positive integer, got {noise_ratio}")


def nce_loss(energy_fn: EnergyFn, log_z: Tensor, x_data: Tensor, noise_dist: Distribution,
             noise_ratio: int = 1,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Noise-contrastive estimation against a fixed `noise_dist`; returns (loss, accuracy).

    The model log-density is -E(x) - log_z, with log_z a learned scalar tensor ([] or [1]).
    noise_dist.log_prob is summed over any dims it leaves per row, so both `Independent`
    and factorised distributions work. noise_ratio * B noise points are drawn per call.
    """
    _check_ratio(noise_ratio)
    n_data = x_data.shape[0]
    sample_shape = _noise_sample_shape(noise_dist, noise_ratio * n_data, x_data)
    x_noise = _sample_noise(noise_dist, sample_shape, generator).to(x_data)
    x_all = torch.cat([x_data, x_noise])
    log_model = -per_example_energy(energy_fn, x_all) - log_z.reshape(())
    log_noise = _per_example(noise_dist.log_prob(x_all), x_all.shape[0])
    logits = log_model - log_noise - math.log(noise_ratio)
    return _classification_loss(logits[:n_data], logits[n_data:], noise_ratio)


def fce_loss(energy_fn: EnergyFn, log_z: Tensor, x_data: Tensor,
             flow_log_prob: Callable[[Tensor], Tensor], flow_sample: Callable[[int], Tensor],
             noise_ratio: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Flow-contrastive estimation (Gao et al. 2020); returns (energy_loss, flow_loss, accuracy).

    NCE whose noise is a flow q trained against the energy on one shared value
        V = mean_data log sigmoid(G) + nu * mean_q log sigmoid(-G),   G = log p - log q - log nu.
    The energy (with log_z) maximises V: energy_loss = -V, every flow quantity detached. The
    flow minimises V: flow_loss = V, differentiated through log q at the data and, by
    reparameterisation, through its samples, including the energy evaluated at them. At
    p = p_data and nu = 1, V = 2 JS(p_data, q) - log 4, so the flow step lowers the
    Jensen-Shannon divergence to the data, as in the paper.

    `flow_sample(n)` must return reparameterised samples [n, ...]; `flow_log_prob(x)` returns
    log q(x) [n]. flow_loss also reaches the energy's parameters (through its input), so zero
    the energy's gradients before its own backward pass, as for a GAN generator step.
    """
    _check_ratio(noise_ratio)
    log_offset = math.log(noise_ratio)
    log_z = log_z.reshape(())
    x_flow = flow_sample(noise_ratio * x_data.shape[0])
    log_q_data = _per_example(flow_log_prob(x_data), x_data.shape[0])
    log_q_flow = _per_example(flow_log_prob(x_flow), x_flow.shape[0])
    log_p_data = -per_example_energy(energy_fn, x_data) - log_z

    log_p_flow_fixed = -per_example_energy(energy_fn, x_flow.detach()) - log_z
    neg_value, accuracy = _classification_loss(
        log_p_data - log_q_data.detach() - log_offset,
        log_p_flow_fixed - log_q_flow.detach() - log_offset, noise_ratio)

    log_p_flow_live = -per_example_energy(energy_fn, x_flow) - log_z.detach()
    neg_value_for_flow, _ = _classification_loss(
        log_p_data.detach() - log_q_data - log_offset,
        log_p_flow_live - log_q_flow - log_offset, noise_ratio)
    return neg_value, -neg_value_for_flow, accuracy
