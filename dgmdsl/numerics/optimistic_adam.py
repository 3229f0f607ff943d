"""Optimistic Adam (Daskalakis, Ilyas, Syrgkanis & Zeng 2018, "Training GANs with Optimism").

Adam computes a step u_t = lr * m_hat_t / (sqrt(v_hat_t) + eps) from bias-corrected moment
estimates; optimistic Adam moves by 2 u_t - u_{t-1} instead of u_t: it extrapolates with
the newest step and takes back the one before. In a two-player game this damps the
rotation that plain gradient steps orbit with (the bilinear game x * y, where Adam
circles the equilibrium and optimistic Adam spirals into it; tests/numerics/
test_optimistic_adam.py). Weight decay, as in torch.optim.Adam, is added to the gradient.

The per-parameter state is Adam's (step, exp_avg, exp_avg_sq) plus `last_update`, the
u_{t-1} above, all tensors: the optimizer's state_dict saves and restores a run exactly.
"""
from __future__ import annotations

import math

import torch

__all__ = ["OptimisticAdam"]


class OptimisticAdam(torch.optim.Optimizer):
    """torch.optim.Adam's moments; the parameters move by 2 u_t - u_{t-1} (see the module)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid OptimisticAdam options lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def _state_of(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["last_update"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            states = [self._state_of(p) for p in params]
            grads = [p.grad for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            step_sizes, root_corrections = [], []
            for s in states:
                s["step"] += 1
                t = float(s["step"])
                step_sizes.append(group["lr"] / (1 - beta1 ** t))
                root_corrections.append(math.sqrt(1 - beta2 ** t))
            denominators = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denominators, root_corrections)
            torch._foreach_add_(denominators, group["eps"])
            updates = torch._foreach_div(exp_avgs, denominators)
            torch._foreach_mul_(updates, step_sizes)
            last = [s["last_update"] for s in states]
            torch._foreach_add_(params, updates, alpha=-2.0)
            torch._foreach_add_(params, last)
            torch._foreach_copy_(last, updates)
        return loss
