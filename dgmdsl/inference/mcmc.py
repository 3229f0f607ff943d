"""NUTS and HMC through pyro.infer.MCMC, for global params with priors (rule 7).

Chains run one after another in this process (each seeded seed + c), so R-hat needs no
worker processes; `max_steps` caps warmup + samples per chain, half each."""
from __future__ import annotations

from typing import Any

import torch

from ..runtime.batches import widen
from .base import Engine

__all__ = ["NUTS", "HMC", "posterior_summary"]


def posterior_summary(samples: dict[str, torch.Tensor]) -> dict[str, dict[str, list]]:
    """Mean, sd, effective sample size and split R-hat per parameter element.
    `samples[name]` has shape [chains, draws, *shape]."""
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    out = {}
    for name, draws in samples.items():
        flat = draws.reshape(draws.shape[0], draws.shape[1], -1).double()
        out[name] = {
            "mean": flat.mean(dim=(0, 1)).tolist(),
            "sd": flat.reshape(-1, flat.shape[-1]).std(dim=0).tolist(),
            "ess": effective_sample_size(flat, chain_dim=0, sample_dim=1).tolist(),
            "r_hat": split_gelman_rubin(flat, chain_dim=0, sample_dim=1).tolist(),
        }
    return out


class _MCMCEngine(Engine):
    kernel_name = "nuts"

    def __init__(self, model, settings) -> None:
        super().__init__(model, settings)
        self.samples: dict[str, torch.Tensor] = {}

    def _counts(self) -> tuple[int, int, int]:
        opts = self.settings.method_options
        warmup, draws = int(opts.get("warmup", 500)), int(opts.get("samples", 500))
        if self.settings.max_steps:
            warmup = draws = max(1, self.settings.max_steps // 2)
        return warmup, draws, int(opts.get("chains", 2))

    def _kernel(self, model_fn):
        from pyro.infer import HMC, NUTS

        opts = self.settings.method_options
        if self.kernel_name == "nuts":
            return NUTS(model_fn, target_accept_prob=float(opts.get("target_accept", 0.8)),
                        jit_compile=False)
        return HMC(model_fn, step_size=float(opts.get("step_size", 0.1)),
                   num_steps=int(opts.get("num_steps", 10)), adapt_step_size=True)

    def fit(self, data, run_dir, resume_state, device) -> dict:
        import pyro
        from pyro.infer import MCMC

        if resume_state is not None:
            self.load_state_dict(resume_state["trainable"])
            return {"chains": next(iter(self.samples.values())).shape[0], "resumed": True}
        batch = widen({k: v.to(device) for k, v in data.items()})  # all the data is MCMC's one batch
        warmup, draws, chains = self._counts()
        per_chain = []
        for c in range(chains):
            pyro.set_rng_seed(self.settings.seed + c)
            pyro.clear_param_store()
            mcmc = MCMC(self._kernel(lambda: self.model.pyro_model(batch)), num_samples=draws,
                        warmup_steps=warmup, disable_progbar=self.settings.quiet)
            mcmc.run()
            per_chain.append({k: v.detach().cpu() for k, v in mcmc.get_samples().items()})
        names = self.model.prior_params
        self.samples = {n: torch.stack([ch[n] for ch in per_chain]) for n in names}
        if run_dir is not None:
            from ..runtime.checkpoint import save_checkpoint
            save_checkpoint(run_dir.checkpoint_path, {"trainable": self.state_dict(), "step": warmup + draws})
        return {"chains": chains, "warmup": warmup, "samples": draws,
                "posterior": posterior_summary(self.samples)}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "posterior": dict(self.samples)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.samples = dict(state.get("posterior", {}))


class NUTS(_MCMCEngine):
    name = kernel_name = "nuts"


class HMC(_MCMCEngine):
    name = kernel_name = "hmc"
