import os
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
