"""Probability density distillation: an IAF student fitted to a small MAF teacher run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import dgmdsl
from dgmdsl.families.flow import kl_estimate
from dgmdsl.frontend.diagnostics import DgmError
from dgmdsl.inference.distill import Distill
from dgmdsl.runtime.errors import RuntimeUserError

TEACHER = """model Teacher {{
    data   x : real[3]
    latent z : real[3]
    flow f {{
        repeat 2 {{
            maf(net = MADE(hidden = [16, 16]))
            permute(reverse)
        }}
    }}
    z ~ Normal(0, 1)
    x = f(z)
    fit {{ data = "{data}", batch_size = 128 }}
}}
"""

STUDENT = """model Student {{
    data   x : real[{dim}]
    latent z : real[{dim}]
    flow f {{
        repeat 2 {{
            iaf(net = MADE(hidden = [16, 16]))
            permute(reverse)
        }}
    }}
    z ~ Normal(0, 1)
    x = f(z)
    fit {{ method = distill(teacher = "{teacher}"), batch_size = 256, optimizer = adam(lr = 3e-3) }}
}}
"""


@pytest.fixture(scope="module")
def teacher_root(tmp_path_factory):
    """A directory holding `runs/teacher`: a MAF fitted to a correlated, shifted 3-D Gaussian."""
    root = tmp_path_factory.mktemp("distill")
    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.4]])
    x = rng.standard_normal((4000, 3)) @ mix.T + np.array([1.0, -2.0, 0.5])
    np.savez(root / "gauss.npz", x=x.astype(np.float32))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    spec = dgmdsl.loads(TEACHER.format(data=root / "gauss.npz"), "teacher.dgm")["Teacher"]
    spec.fit(max_steps=400, out=root / "runs" / "teacher", quiet=True, device="cpu")
    torch.set_num_threads(old)
    return root


def student(dim: int = 3, teacher: str = "runs/teacher"):
    return dgmdsl.loads(STUDENT.format(dim=dim, teacher=teacher), "student.dgm")["Student"]


def fit_student(root, model, out: str = "runs/student", steps: int = 400):
    # `data`: until the runtime asks the engine for the teacher's data source (see the report)
    return model.fit(max_steps=steps, out=out, quiet=True, device="cpu", data=str(root / "gauss.npz"))


def test_kl_decreases_and_student_moments_match_teacher(teacher_root, monkeypatch):
    monkeypatch.chdir(teacher_root)
    teacher = dgmdsl.open_run("runs/teacher", device="cpu").compiled
    model = student()
    torch.manual_seed(0)
    untrained = model.compile().eval()
    kl_before, _ = kl_estimate(untrained, teacher, 4096, torch.Generator().manual_seed(1))
    run = fit_student(teacher_root, model)
    losses = [r["loss"] for r in run.run_dir.read_metrics() if "loss" in r]
    metrics = run.evaluate()
    # measured: KL 13 -> 0.04 nats (stderr 0.004); the logged loss is the same estimate per step
    assert kl_before > 5.0 and metrics["kl_student_teacher_nats"] < 0.1
    assert losses[0] > 20 * losses[-1]
    assert metrics["teacher_nll_nats"] < metrics["nll_nats"] < metrics["teacher_nll_nats"] + 0.1
    with torch.no_grad():
        mine = run.compiled.sample(20_000, seed=3)["x"].double()
        theirs = teacher.sample(20_000, seed=4)["x"].double()
    # Monte Carlo error of these moments is ~0.01; what remains is the student's residual KL
    assert torch.allclose(mine.mean(0), theirs.mean(0), atol=0.15)
    assert torch.allclose(torch.cov(mine.T), torch.cov(theirs.T), atol=0.15)


def test_reopened_student_keeps_its_teacher_without_the_directory(teacher_root, monkeypatch, tmp_path):
    monkeypatch.chdir(teacher_root)
    run = fit_student(teacher_root, student(), out=str(tmp_path / "student"), steps=20)
    before = run.evaluate(limit=200)
    monkeypatch.chdir(tmp_path)  # runs/teacher no longer resolves: the checkpoint carries the teacher
    after = dgmdsl.open_run(tmp_path / "student", device="cpu").evaluate(limit=200)
    for key in ("nll_nats", "teacher_nll_nats", "kl_student_teacher_nats"):
        assert after[key] == pytest.approx(before[key], rel=1e-6)


def assert_located(error: DgmError, text: str, needle: str) -> None:
    rows = text.splitlines()
    line = next(i for i, row in enumerate(rows, 1) if needle in row)
    col = rows[line - 1].index(needle) + 1
    span = error.diagnostics[0].span
    assert (span.line, span.col) == (line, col)
    assert f"student.dgm:{line}:{col}: error:" in error.render()


def test_missing_teacher_is_a_located_error(teacher_root, monkeypatch):
    monkeypatch.chdir(teacher_root)
    model = student(teacher="runs/nowhere")
    with pytest.raises(DgmError) as info:
        fit_student(teacher_root, model, out="runs/orphan", steps=2)
    assert "runs/nowhere" in str(info.value) and "not found" in str(info.value)
    assert_located(info.value, model.program.source.text, '"runs/nowhere"')


def test_teacher_of_another_dimension_is_a_located_error(teacher_root, monkeypatch, tmp_path):
    monkeypatch.chdir(teacher_root)
    model = student(dim=2)
    np.savez(tmp_path / "two.npz", x=np.zeros((64, 2), np.float32))
    with pytest.raises(DgmError) as early:  # before any data is read, once the runtime asks
        Distill.data_source_override(model)
    with pytest.raises(DgmError) as late:  # when fit loads the teacher
        model.fit(max_steps=2, out=str(tmp_path / "run"), quiet=True, device="cpu", data=str(tmp_path / "two.npz"))
    for info in (early, late):
        assert "x : real[3]" in str(info.value) and "real[2]" in str(info.value)
        assert_located(info.value, model.program.source.text, '"runs/teacher"')


def test_teacher_that_is_not_a_flow_is_a_located_error(teacher_root, monkeypatch):
    monkeypatch.chdir(teacher_root)
    bayesnet = dgmdsl.loads(f"""model Gauss {{
    data x : real[3]
    param mu : real[3]
    x ~ Normal(mu, 1)
    fit {{ data = "{teacher_root / 'gauss.npz'}" }}
}}
""", "gauss.dgm")["Gauss"]
    bayesnet.fit(max_steps=2, out="runs/gauss", quiet=True, device="cpu")
    model = student(teacher="runs/gauss")
    with pytest.raises(DgmError, match="not a flow") as info:
        Distill.data_source_override(model)
    assert_located(info.value, model.program.source.text, '"runs/gauss"')


def test_student_data_source_is_the_teachers(teacher_root, monkeypatch):
    monkeypatch.chdir(teacher_root)
    source = Distill.data_source_override(student())
    assert source.path == str(teacher_root / "gauss.npz")


def test_fit_without_data_uses_the_teachers_data(teacher_root, monkeypatch):
    monkeypatch.chdir(teacher_root)
    try:
        run = student().fit(max_steps=2, out="runs/no_data", quiet=True, device="cpu")
    except RuntimeUserError as exc:
        if "names no data" in str(exc):
            pytest.skip("pending runtime change: fit asks the engine's data_source_override")
        raise
    assert run.data_source.path == str(teacher_root / "gauss.npz")
    assert run.evaluate(limit=100)["examples"] == 100
