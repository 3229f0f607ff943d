"""Every reference spec and every project spec checks, and gets the method the table demands."""
import subprocess
import sys

import pytest

import dgmdsl
from tests.conftest import OWN_SPECS, SHARED_SPECS

METHODS = {
    "Sprinkler": "exact_nll", "SprinklerLearned": "exact_nll", "NaiveBayes": "exact_nll",
    "GaussianMixture": "enumeration", "BayesLogReg": "nuts",
    "MarkovChain": "exact_nll", "FVSBN": "exact_nll", "NADE": "exact_nll", "MADE": "exact_nll",
    "RNADE": "exact_nll", "PixelCNN": "exact_nll",
    "VAE": "svi", "VAEAutoGuide": "svi", "HierarchicalVAE": "svi", "VQVAE": "vq",
    "NICE": "exact_nll", "RealNVP": "exact_nll", "MAF": "exact_nll", "IAFStudent": "distill",
    "EBM": "exact_sm", "EBMContrastive": "cd", "EBMNCE": "nce",
    "NCSN": "dsm", "ScoreSDE": "dsm", "ScoreSDEVE": "dsm", "DDPM": "dsm", "DDPMImages": "dsm",
    "GAN": "adversarial", "WGANGP": "adversarial", "FGAN": "adversarial", "BiGAN": "adversarial",
}


def test_shared_specs_present():
    assert len(SHARED_SPECS) >= 30


@pytest.mark.parametrize("path", SHARED_SPECS + OWN_SPECS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_spec_checks(path):
    program = dgmdsl.load(path)
    assert len(program) >= 1
    for model in program.models:
        assert model.graph.number_of_nodes() >= 1


def test_method_table():
    found = {}
    for path in SHARED_SPECS:
        for model in dgmdsl.load(path).models:
            found[model.name] = model.explain().method
    assert found == METHODS


def test_explain_names_rule_and_variables():
    exp = dgmdsl.load(SHARED_SPECS[0].parent / "vae.dgm")["VAE"].explain()
    assert exp.method == "svi" and exp.rule == "5"
    assert "z" in exp.reasons[0] and "rule 5" in exp.reasons[0]
    assert "IWAE" in exp.evaluation
    exp = dgmdsl.load(SHARED_SPECS[0].parent / "ebm_cd.dgm")["EBMContrastive"].explain()
    assert exp.method == "cd" and "exact_sm" in exp.alternatives and "nce" in exp.alternatives


def test_cli_explain_first_line_exact():
    out = subprocess.run([sys.executable, "-m", "dgmdsl", "explain", str(SHARED_SPECS[0].parent / "gmm.dgm")],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "model GaussianMixture: enumeration"
    assert all(line.startswith("    ") for line in lines[1:])


def test_cli_check_all_specs_summary_lines():
    proc = subprocess.run([sys.executable, "-m", "dgmdsl", "check", *map(str, SHARED_SPECS)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(SHARED_SPECS)
    assert proc.stderr == ""


def test_cli_check_failure_exit_1_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.dgm"
    bad.write_text("model M {\n  data x : binary\n  x ~ Normal(0, 1)\n}\n")
    proc = subprocess.run([sys.executable, "-m", "dgmdsl", "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{bad}:3:7: error: x is binary but Normal is real-valued" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_file():
    proc = subprocess.run([sys.executable, "-m", "dgmdsl", "check", "/nonexistent/x.dgm"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
