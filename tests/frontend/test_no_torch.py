"""The front end never imports torch or pyro: checking stays fast."""
import subprocess
import sys

from tests.conftest import SHARED_SPECS


def test_load_does_not_import_torch():
    code = (
        "import sys, dgmdsl\n"
        f"for p in {[str(p) for p in SHARED_SPECS]!r}:\n"
        "    m = dgmdsl.load(p)\n"
        "    [x.graph for x in m.models]; [x.explain() for x in m.models]\n"
        "bad = [n for n in ('torch', 'pyro', 'sympy') if n in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
