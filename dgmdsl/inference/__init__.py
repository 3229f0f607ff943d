"""Inference engines: one method per module, one row per method in ENGINES."""
from __future__ import annotations

from importlib import import_module

__all__ = ["ENGINES", "get_engine"]

# method name (LANGUAGE.md §7) -> "module:Class"; imported on first use
ENGINES: dict[str, str] = {
    "exact_nll": "exact_nll:ExactNLL",
    "enumeration": "enumeration:Enumeration",
    "nuts": "mcmc:NUTS",
    "hmc": "mcmc:HMC",
    "svi": "svi:SVI",
    "vq": "vq:VQ",
    "distill": "distill:Distill",
    "exact_sm": "score_matching:ExactScoreMatching",
    "ssm": "score_matching:SlicedScoreMatching",
    "dsm": "dsm:DenoisingScoreMatching",
    "cd": "contrastive_divergence:ContrastiveDivergence",
    "nce": "nce:NCE",
    "fce": "nce:FCE",
    "adversarial": "adversarial:Adversarial",
}


def get_engine(method: str):
    """The engine class for `method`; NotImplementedError where none is built yet."""
    if method in ENGINES:
        module, cls = ENGINES[method].split(":")
        try:
            return getattr(import_module(f"{__name__}.{module}"), cls)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
    raise NotImplementedError(f"inference method '{method}' is not implemented in this version of dgmdsl")
