"""A fitted run: sample, evaluate, query and save what `fit` produced."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch

from .batches import widen
from .datasets import DataSource, load_split, parse_data_option
from .errors import RuntimeUserError

__all__ = ["FittedRun", "DEFAULT_EVAL_LIMIT"]

DEFAULT_EVAL_LIMIT = 2000


class FittedRun:
    def __init__(self, model, compiled, engine, run_dir, *, data_source: DataSource | None = None,
                 data_dir=None, fit_result: dict | None = None) -> None:
        self.model = model
        self.compiled = compiled
        self.engine = engine
        self.run_dir = run_dir
        self.data_source = data_source
        self.data_dir = data_dir
        self.fit_result = fit_result or {}

    @property
    def path(self) -> Path:
        return self.run_dir.path

    @property
    def posterior(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self.engine, "samples", {}) or {})

    def _posterior_draws(self, limit: int = 200) -> list[dict[str, torch.Tensor]]:
        post = self.posterior
        if not post:
            return []
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in post.items()}
        n = next(iter(flat.values())).shape[0]
        idx = torch.linspace(0, n - 1, min(limit, n)).long()
        return [{k: v[i].to(self.compiled.device) for k, v in flat.items()} for i in idx]

    # ---- sampling -------------------------------------------------------------------
    def covariates(self, split: str = "heldout", data=None, n: int | None = None) -> dict[str, torch.Tensor]:
        cov = [v for v in self.compiled.data_vars() if v.is_covariate]
        if not cov:
            return {}
        arrays = self.load(split, data)
        rows = slice(n) if n else slice(None)
        return widen({v.name: torch.from_numpy(arrays[v.name][rows]).to(self.compiled.device) for v in cov})

    def sample(self, n: int = 16, seed: int | None = 0, data=None) -> dict[str, np.ndarray]:
        cov = self.covariates(data=data, n=n)
        if cov:
            n = len(next(iter(cov.values())))
        kwargs = {"covariates": cov} if cov else {}
        draws = self._posterior_draws(1)
        if draws:
            kwargs["params"] = draws[0]
        with torch.no_grad():
            out = self.compiled.sample(n, seed=seed, **kwargs)
        return {k: v.detach().cpu().numpy() for k, v in out.items()}

    # ---- evaluation -----------------------------------------------------------------
    def load(self, split: str = "heldout", data=None) -> dict[str, np.ndarray]:
        source = parse_data_option(str(data)) if data is not None else self.data_source
        if source is None:
            raise RuntimeUserError("this run has no data source to evaluate on", hint="pass --data PATH")
        split = "heldout" if split in ("valid", "heldout", "test") else "train"
        if data is not None and source.path:
            split = "train"  # a user's file is evaluated as given
        return load_split(source, split, self.compiled.var_specs(), data_dir=self.data_dir,
                          program=self.model.program)

    def evaluate(self, split: str = "valid", data=None, limit: int | None = DEFAULT_EVAL_LIMIT,
                 batch_size: int = 1000, **options) -> dict:
        """Held-out metrics the method supports (NLL in nats per example, bits/dim...)."""
        arrays = self.load(split, data)
        n_total = len(next(iter(arrays.values())))
        n = n_total if not limit else min(limit, n_total)
        batch = widen({k: torch.from_numpy(v[:n]).to(self.compiled.device) for k, v in arrays.items()})
        self.compiled.eval()
        if hasattr(self.compiled, "evaluate"):
            metrics = self.compiled.evaluate(batch, batch_size=batch_size, draws=self._posterior_draws(), **options)
        else:  # pragma: no cover - every backend defines evaluate
            raise RuntimeUserError("this model has no evaluation")
        metrics.update({"examples": n, "of": n_total, "split": split if data is None else str(data)})
        if self.posterior:
            from ..inference.mcmc import posterior_summary
            metrics["posterior"] = posterior_summary(self.posterior)
        return metrics

    def query(self, query: str, **options):
        from ..inference.variable_elimination import answer_query
        return answer_query(self.compiled, query, draws=self._posterior_draws(), **options)

    def save(self, path) -> Path:
        """Copy the run directory (spec, config, checkpoint, metrics) to `path`."""
        target = Path(path)
        if target.resolve() != self.path.resolve():
            if target.exists() and any(target.iterdir()):
                raise RuntimeUserError(f"{target} is not empty", hint="choose a new directory")
            shutil.copytree(self.path, target, dirs_exist_ok=True)
        return target

    def __repr__(self) -> str:
        return f"<FittedRun {self.model.name} at {self.path}>"


def nats_to_bits_per_dim(nll: float, dims: int) -> float:
    return nll / (dims * math.log(2)) if dims else float("nan")
