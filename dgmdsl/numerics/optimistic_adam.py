"""Optimistic Adam (Daskalakis, Ilyas, Syrgkanis & Zeng 2018, "Training GANs with Optimism").

Adam computes a step u_t = lr * m_hat_t / (sqrt(v_hat_t) + eps) from bias-corrected moment
estimates; optimistic Adam moves by 2 u_t - u_{t-1} instead of u_t: it extrapolates with
the newest step and takes back the one before. In a two-player game this damps the
rotation that plain gradient steps orbit with (the bilinear game x * y, where Adam
circles the equilibrium and optimistic Adam spirals into it; tests/numerics/
test_optimistic_adam.py).

torch.optim.Adam takes the step u_t (moments, bias correction, weight decay are its
own); this class only adds the correction -u_t + u_{t-1}, keeping u_{t-1} as
`last_update` in each parameter's Adam state, so the state_dict restores a run exactly.
"""
from __future__ import annotations

import torch

__all__ = ["OptimisticAdam"]


class OptimisticAdam(torch.optim.Adam):
    """torch.optim.Adam whose parameters move by 2 u_t - u_{t-1} (see the module)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid OptimisticAdam options lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        stepped = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not stepped:
            return loss
        before = torch._foreach_mul(stepped, 1.0)  # copies
        super().step()
        updates = torch._foreach_sub(before, stepped)  # Adam's u_t
        for p in stepped:
            if "last_update" not in self.state[p]:  # the first step: u_0 = 0
                self.state[p]["last_update"] = torch.zeros_like(p)
        last = [self.state[p]["last_update"] for p in stepped]
        torch._foreach_sub_(stepped, updates)
        torch._foreach_add_(stepped, last)
        torch._foreach_copy_(last, updates)
        return loss
