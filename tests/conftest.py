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
