"""Family backends: graph IR -> a CompiledModel (torch). One family per module; a new
family is a new module plus one row in FAMILIES."""
from __future__ import annotations

from importlib import import_module

from ..ir import ModelIR

__all__ = ["FAMILIES", "backend_class", "build_model", "family_available"]

# family name (from the checker) -> "module:Class"; imported on first use
FAMILIES: dict[str, str] = {
    "bayesnet": "bayesnet:BayesNetModel",
    "autoregressive": "autoregressive:AutoregressiveModel",
    "flow": "flow:FlowModel",
    "latent": "latent:LatentVariableModel",
    "vq": "vq:VQVAEModel",
    "energy": "energy:EnergyModel",
    "diffusion": "diffusion:DiffusionModel",
    "score": "score:ScoreModel",
    "ddpm": "ddpm:DDPMModel",
    "implicit": "implicit:ImplicitModel",
}


def _import(family: str):
    module, cls = FAMILIES[family].split(":")
    try:
        mod = import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{module}":
            return None
        raise
    return getattr(mod, cls)


def backend_class(family: str):
    """The backend class of `family`, or None where it is not built."""
    return _import(family) if family in FAMILIES else None


def family_available(family: str) -> bool:
    return family in FAMILIES and _import(family) is not None


def build_model(ir: ModelIR):
    """The untrained compiled model for `ir`; raises NotImplementedError for a family not yet built."""
    family = ir.model.family
    cls = _import(family) if family in FAMILIES else None
    if cls is None:
        raise NotImplementedError(f"the {family} family has no backend in this version of dgmdsl")
    return cls(ir)
