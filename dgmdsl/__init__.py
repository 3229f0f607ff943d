"""dgmdsl: deep generative models from short declarative .dgm specs.

    prog = dgmdsl.load("vae.dgm")
    model = prog["VAE"]
    model.graph          # networkx.DiGraph
    model.explain()      # the inference chosen, and why
    run = model.fit(max_steps=1000)

Importing dgmdsl, `load` and `loads` never import torch or pyro.
"""
from .api import Explanation, Model, Program, load, loads
from .frontend.diagnostics import DgmError, Diagnostic

__all__ = ["DgmError", "Diagnostic", "Explanation", "Model", "Program", "load", "loads", "open_run"]
__version__ = "0.1.0"


def open_run(path, device: str = "auto", data_dir=None):
    """Reload a fitted run directory written by `fit`."""
    from .runtime.api import open_run as _open_run
    return _open_run(path, device=device, data_dir=data_dir)
