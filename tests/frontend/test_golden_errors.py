"""Golden tests: every bad spec in bad/ has its exact `dgm check` output in bad/NAME.err.
Regenerate on purpose with DGM_REGEN_GOLDEN=1 pytest tests/frontend/test_golden_errors.py."""
import os
from pathlib import Path

import pytest

from dgmdsl import DgmError, loads

BAD = Path(__file__).parent / "bad"
CASES = sorted(BAD.glob("*.dgm"))


def rendered(path: Path) -> str:
    with pytest.raises(DgmError) as info:
        loads(path.read_text(), f"bad/{path.name}")
    return info.value.render() + "\n"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path):
    expected = path.with_suffix(".err")
    out = rendered(path)
    if os.environ.get("DGM_REGEN_GOLDEN"):
        expected.write_text(out)
    assert expected.exists(), f"no golden output for {path.name}: run with DGM_REGEN_GOLDEN=1"
    assert out == expected.read_text()
