"""`dgm fit | sample | eval | query | data` through the CLI's main function: what is printed."""
import numpy as np
import pytest

from dgmdsl.cli import main

NB = """model NB {
    data label : binary
    data x : binary
    label ~ Bernoulli(probs = table())
    x ~ Bernoulli(probs = table(label))
}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "nb.dgm"
    path.write_text(NB)
    return path


def _fit(spec, *args):
    return main(["fit", str(spec), "--max-steps", "3", "--device", "cpu", *map(str, args)])


def test_quiet_fit_prints_only_the_summary(spec, tmp_path, capfd):
    (tmp_path / "ok.csv").write_text("label,x\n0,1\n1,0\n0,0\n1,1\n")
    assert _fit(spec, "--data", tmp_path / "ok.csv", "--quiet", "--out", tmp_path / "run") == 0
    out, err = capfd.readouterr()
    assert err == ""  # no progress lines
    assert "fit:" not in out and "run directory:" in out


def test_bad_value_in_a_csv_is_one_located_error(spec, tmp_path, capfd):
    (tmp_path / "bad.csv").write_text("label,x\n0,1\n1,0\n0,0\n1,2\n0,1\n")
    assert _fit(spec, "--data", tmp_path / "bad.csv") == 1
    err = capfd.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert err.startswith(f"{tmp_path / 'bad.csv'}: variable 'x', row 3: error: value 2 is outside binary")


def test_data_error_prints_its_hint_once(spec, tmp_path, capfd):
    np.savez(tmp_path / "wide.npz", label=np.array([0, 1, 0]), x=np.zeros((3, 2)))
    assert _fit(spec, "--data", tmp_path / "wide.npz") == 1
    lines = capfd.readouterr().err.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'wide.npz'}: variable 'x': error: shape mismatch")
    assert lines[1].startswith("  hint: a flat array") and len(lines) == 2


def test_unlocated_data_error_and_spec_error(spec, tmp_path, capfd):
    assert _fit(spec, "--data", "moonz(n = 10)") == 1
    err = capfd.readouterr().err
    assert err.startswith("error: --data 'moonz(n = 10)' is neither") and err.count("error:") == 1
    assert "  hint: " in err
    bad = tmp_path / "bad.dgm"
    bad.write_text("model B {\n  data x : binary\n  x ~ Bernouli(0.5)\n}\n")
    assert _fit(bad) == 1
    err = capfd.readouterr().err
    assert err.startswith(f"{bad}:3:7: error: unknown distribution") and err.count("error:") == 1


def test_data_error_in_a_spawned_process_is_printed_once(spec, tmp_path, capfd):
    (tmp_path / "bad.csv").write_text("label,x\n0,1\n1,0\n0,0\n1,2\n")
    assert _fit(spec, "--data", tmp_path / "bad.csv", "--nproc", 2, "--out", tmp_path / "run") == 1
    err = capfd.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err and "internal error" not in err
    assert f"{tmp_path / 'bad.csv'}: variable 'x', row 3: error: value 2" in err
