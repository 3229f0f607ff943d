import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SHARED_SPECS = sorted((SHARED / "specs").glob("*.dgm"))
OWN_SPECS = sorted((ROOT / "specs").glob("*.dgm"))
SHARED_DATA = SHARED / "data"


@pytest.fixture
def shared_data_dir(monkeypatch):
    monkeypatch.setenv("DGM_DATA_DIR", str(SHARED_DATA))
    return SHARED_DATA


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and a loaded 2-core machine stays usable."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler during each test: a runner that starts the suite in the
    background leaves SIGINT ignored (SIG_IGN), which the Ctrl-C tests of the loop would
    then see instead of a terminal's behaviour."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
