"""Early stopping (`fit { patience, validate_every }`): stops when the held-out loss stops
improving, ends on the best weights, resumes exactly, costs nothing when absent."""
import json
import os
import signal

import pytest
import torch

import dgmdsl
from dgmdsl import DgmError
from dgmdsl.cli import main
from dgmdsl.runtime.checkpoint import load_checkpoint
from dgmdsl.runtime.early_stopping import HeldoutLoss
from dgmdsl.runtime.errors import RuntimeUserError
from dgmdsl.runtime.loop import run_loop
from tests.runtime.helpers import MIX_FIT, mix_spec, run_dgm
from tests.runtime.test_loop import CPU, LinearTrainable, _assert_same_parameters, _config, _data, _resume, _run_dir


def _heldout() -> dict[str, torch.Tensor]:
    """Rows whose target is half the training one: as the regression fits the training
    rows its held-out loss first falls, then rises (from step 32 on, with seed 0)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=generator)
    return {"x": x, "y": x @ torch.tensor([0.5, -1.0, 0.25]) + 0.15, "row": torch.arange(20)}


class OverfittingLinear(LinearTrainable):
    def validation_loss(self, batch):
        # Noise from the global stream, as an ELBO's latents are: the check must not shift
        # training's draws, and must draw alike at every check.
        noisy = batch["x"] + 0.1 * torch.randn_like(batch["x"])
        return (self.model(noisy).squeeze(-1) - batch["y"]).pow(2).mean()


def _fit(trainable, run_dir=None, on_step=None, **config):
    settings = {"max_steps": 60, "patience": 3, "validate_every": 2, **config}
    return run_loop(trainable, _data(), _config(**settings), run_dir, device=CPU, validation=_heldout(),
                    on_step=on_step)


def _heldout_loss(trainable) -> float:
    return HeldoutLoss(trainable, _heldout(), batch_size=4, seed=7, device=CPU)()


class RunDirRecords:
    """The held-out records of a run's metrics file."""

    def __init__(self, path):
        lines = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        valid = [r for r in lines if "valid_loss" in r]
        self.valid_steps = [r["step"] for r in valid]
        self.valid_losses = [r["valid_loss"] for r in valid]


def test_stops_when_the_heldout_loss_rises_and_ends_on_the_best_weights(tmp_path):
    trainable = OverfittingLinear()
    result = _fit(trainable, _run_dir(tmp_path))
    assert result.stopped_by == "patience"
    assert result.best_step == 32 and result.steps == 38  # three checks (34, 36, 38) without improvement
    assert _heldout_loss(trainable) == result.best_valid_loss  # the model holds the best weights
    saved = load_checkpoint(result.checkpoint)
    assert torch.equal(saved["trainable"]["modules"]["model"]["weight"], trainable.model.weight)
    records = RunDirRecords(tmp_path / "run")
    assert records.valid_steps == list(range(2, 39, 2))
    assert min(records.valid_losses) == result.best_valid_loss
    # validating leaves training's random stream alone: the steps run are those of a run without patience
    plain = LinearTrainable()
    run_loop(plain, _data(), _config(max_steps=38), None, device=CPU)
    assert trainable.losses == plain.losses


def test_the_last_step_is_checked_and_a_finished_run_ends_on_its_best_weights(tmp_path):
    trainable = OverfittingLinear()
    result = _fit(trainable, _run_dir(tmp_path), max_steps=35, patience=10, validate_every=4)
    assert result.stopped_by is None and result.steps == 35
    assert RunDirRecords(tmp_path / "run").valid_steps == [4, 8, 12, 16, 20, 24, 28, 32, 35]
    assert result.best_step == 32 and _heldout_loss(trainable) == result.best_valid_loss


def test_without_patience_nothing_changes(tmp_path):
    a = LinearTrainable()  # each seeds the global stream as it is made
    run_loop(a, _data(), _config(max_steps=20), _run_dir(tmp_path, "a"), device=CPU)
    b = LinearTrainable()
    result = run_loop(b, _data(), _config(max_steps=20, patience=None), _run_dir(tmp_path, "b"), device=CPU,
                      validation=_heldout())
    assert a.losses == b.losses
    _assert_same_parameters(a, b)
    assert result.best_step is None and "early_stopping" not in load_checkpoint(result.checkpoint)
    assert not RunDirRecords(tmp_path / "b").valid_steps
    # and through `fit`: no validation, no extra keys
    run = dgmdsl.loads(mix_spec())["Mix"].fit(max_steps=10, quiet=True, device="cpu")
    assert "best_step" not in run.fit_result and run.engine.heldout is None
    assert not any("valid_loss" in r for r in run.run_dir.read_metrics())


def test_interrupted_and_resumed_run_stops_where_an_uninterrupted_one_does(tmp_path):
    full = OverfittingLinear()
    expected = _fit(full)

    def interrupt_at_step_35(step, output):  # after the check at 34, the first without improvement
        if step == 35:
            os.kill(os.getpid(), signal.SIGINT)

    first = OverfittingLinear()
    paused = _fit(first, _run_dir(tmp_path), on_step=interrupt_at_step_35)
    assert paused.stopped_by == "SIGINT" and paused.steps == 35
    saved = load_checkpoint(paused.checkpoint)["early_stopping"]
    assert (saved["best_step"], saved["checks_without_improvement"]) == (32, 1)
    second = OverfittingLinear(seed=5)  # the checkpoint restores weights, best-so-far and RNG
    result = _resume(tmp_path, "run", second, _config(max_steps=60, patience=3, validate_every=2),
                     validation=_heldout())
    assert (result.stopped_by, result.steps, result.best_step) == ("patience", expected.steps, expected.best_step)
    assert result.best_valid_loss == expected.best_valid_loss
    assert first.losses + second.losses == full.losses
    _assert_same_parameters(full, second)
    # a run stopped by patience is finished: resuming it trains no further
    again = OverfittingLinear(seed=6)
    result = _resume(tmp_path, "run", again, _config(max_steps=60, patience=3, validate_every=2),
                     validation=_heldout())
    assert result.stopped_by == "patience" and again.losses == []
    _assert_same_parameters(full, again)


# -- through fit, the spec and the command line -------------------------------------------

TINY_FLOW = """model TinyFlow {
    data   x : real[2]
    latent z : real[2]
    flow f {
        repeat 2 {
            affine_coupling(mask = alternate, net = MLP(hidden = [64, 64]))
            permute(reverse)
        }
    }
    z ~ Normal(0, 1)
    x = f(z)
    fit { data = moons(n = 64, seed = 3), batch_size = 32, optimizer = adam(lr = 3e-3),
          patience = 4, validate_every = 25 }
}
"""


def test_a_flow_on_64_rows_stops_on_the_split_dgm_eval_reads(tmp_path):
    run = dgmdsl.loads(TINY_FLOW)["TinyFlow"].fit(max_steps=1000, out=tmp_path / "run", quiet=True, device="cpu")
    result = run.fit_result
    assert result["stopped_by"] == "patience" and result["best_step"] < result["steps"] < 1000
    # the held-out loss is the exact NLL on the held-out split, as `dgm eval` reports it
    assert run.evaluate()["nll_nats"] == pytest.approx(result["best_valid_loss"], rel=1e-5)
    reopened = dgmdsl.open_run(tmp_path / "run", device="cpu")
    assert reopened.evaluate()["nll_nats"] == pytest.approx(result["best_valid_loss"], rel=1e-5)


def test_patience_with_an_adversarial_spec_is_refused_before_training(tmp_path):
    gan = """model G {
    data   x : real[2]
    latent z : real[2]
    net    G = MLP(hidden = [8])
    critic D = MLP(hidden = [8])
    z ~ Normal(0, 1)
    x = G(z)
    fit { method = adversarial, data = moons(n = 64), patience = 3 }
}
"""
    with pytest.raises(RuntimeUserError, match="adversarial has none") as info:
        dgmdsl.loads(gan)["G"].fit(max_steps=5, out=tmp_path / "run", quiet=True, device="cpu")
    assert "dgm eval" in info.value.hint and not (tmp_path / "run").exists()


@pytest.mark.parametrize("entry,words", [("patience = 0", "fit.patience must be a positive integer, got 0"),
                                         ("patience = 2.5", "got 2.5"),
                                         ("validate_every = -1", "fit.validate_every must be a positive")])
def test_a_bad_value_in_the_spec_is_a_located_check_error(entry, words):
    with pytest.raises(DgmError) as info:
        dgmdsl.loads(mix_spec(f"{MIX_FIT}, {entry}"))
    diag = info.value.diagnostics[0]
    assert words in diag.message and diag.span.line == 7  # the fit block's line


def test_validate_every_without_patience_is_refused():
    with pytest.raises(RuntimeUserError, match="no patience"):
        dgmdsl.loads(mix_spec(f"{MIX_FIT}, validate_every = 4"))["Mix"].fit(max_steps=4, quiet=True, device="cpu")


def test_the_command_line_flags_reach_the_run(tmp_path, capfd):
    spec = tmp_path / "mix.dgm"
    spec.write_text(mix_spec())
    out = tmp_path / "run"
    code = main(["fit", str(spec), "--patience", "2", "--validate-every", "4", "--max-steps", "24",
                 "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert (settings["patience"], settings["validate_every"]) == (2, 4)
    result = json.loads((out / "fit_result.json").read_text())
    assert "best_step" in result and "best_valid_loss: " in capfd.readouterr().out
    assert RunDirRecords(out).valid_steps[:3] == [4, 8, 12]
    assert main(["fit", str(spec), "--patience", "0", "--max-steps", "4", "--device", "cpu", "--quiet"]) == 1
    assert "patience must be a positive integer, got 0" in capfd.readouterr().err


def test_two_processes_stop_where_one_does(tmp_path):
    """Each process evaluates half the held-out rows; the all-reduced loss is the same
    everywhere, so both stop at one step (a split decision would hang the run)."""
    spec = tmp_path / "mix.dgm"
    spec.write_text(mix_spec())
    flags = ["--max-steps", "400", "--patience", "2", "--validate-every", "8", "--lr", "0.05", "--device", "cpu",
             "--quiet"]
    one = dgmdsl.loads(mix_spec())["Mix"].fit(max_steps=400, patience=2, validate_every=8, lr=0.05, quiet=True,
                                             device="cpu", out=tmp_path / "one")
    proc = run_dgm("fit", spec, "--out", tmp_path / "two", "--nproc", "2", *flags, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    two = json.loads((tmp_path / "two" / "fit_result.json").read_text())
    assert two["stopped_by"] == one.fit_result["stopped_by"] == "patience"
    assert (two["steps"], two["best_step"]) == (one.fit_result["steps"], one.fit_result["best_step"])
    assert two["best_valid_loss"] == pytest.approx(one.fit_result["best_valid_loss"], rel=1e-5)
