"""What several runtime tests share: a small mixture spec and the CLI run in a fresh process."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

MIX_FIT = "data = eight_gaussians(n = 512, seed = 0), batch_size = 32"


def mix_spec(fit: str = MIX_FIT) -> str:
    """A four-component Gaussian mixture (exact enumeration of k), fitted as `fit { FIT }` says."""
    return f"""model Mix {{
    data   x : real[2]
    latent k : cat(4)
    param  mu : real[4, 2]
    k ~ Categorical(probs = table())
    x ~ Normal(mu[k], 0.3)
    fit {{ {fit} }}
}}
"""


MIX = mix_spec()


def run_dgm(*args, cwd=None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m dgmdsl ARGS` in a bare environment (PATH, PYTHONPATH and `env`); output captured."""
    return subprocess.run([sys.executable, "-m", "dgmdsl", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **(env or {})})
