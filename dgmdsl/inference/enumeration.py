"""Maximum likelihood with discrete latents summed out exactly.

The backend's `log_prob` already marginalises every finite discrete latent (a batched
log-sum-exp over their joint values); this engine is the same gradient loop, named
apart so `dgm explain` and the run's config say which rule applied. Its loss equals
the negative of Pyro's TraceEnum_ELBO on the same model with an empty guide (tested).
"""
from __future__ import annotations

from .exact_nll import ExactNLL

__all__ = ["Enumeration"]


class Enumeration(ExactNLL):
    name = "enumeration"
