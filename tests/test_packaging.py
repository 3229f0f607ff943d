"""A non-editable install ships the grammar and every subpackage."""
import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_wheel_holds_grammar_and_every_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("dgmdsl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "dgmdsl/grammars/dgm.lark" in names
    packages = {str(p.relative_to(ROOT)) for p in (ROOT / "dgmdsl").rglob("__init__.py")}
    missing = sorted(p for p in packages if p not in names and "__pycache__" not in p)
    assert not missing, f"add these packages to pyproject.toml: {missing}"
