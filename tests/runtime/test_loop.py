"""The training loop: data order, bounds, resume, stop requests, non-finite losses."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import threading

import pytest
import torch

from dgmdsl.runtime.batches import EpochBatches, epoch_permutation, shard_indices
from dgmdsl.runtime.checkpoint import load_checkpoint
from dgmdsl.runtime.device import resolve_device
from dgmdsl.runtime.errors import RuntimeUserError
from dgmdsl.runtime.loop import LoopConfig, run_loop
from dgmdsl.runtime.progress import Progress
from dgmdsl.runtime.rundir import RunDir
from dgmdsl.runtime.stopping import NonFiniteLoss, StopRequest

CPU = torch.device("cpu")
N_ROWS, BATCH = 13, 4  # 4 batches per epoch: 4, 4, 4, 1 rows


def _data() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N_ROWS, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return {"x": x, "y": y, "row": torch.arange(N_ROWS)}


class LinearTrainable:
    """A tiny regression with Adam; draws noise from the global RNG every step."""

    def __init__(self, seed: int = 0, nan_loss_at: int | None = None, nan_weight_at: int | None = None):
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(3, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.nan_loss_at, self.nan_weight_at = nan_loss_at, nan_weight_at
        self.losses: list[float] = []
        self.rows: list[int] = []

    def train_step(self, batch, step):
        self.rows += batch["row"].tolist()
        self.optimizer.zero_grad()
        noisy = batch["x"] + 0.1 * torch.randn_like(batch["x"])
        loss = (self.model(noisy).squeeze(-1) - batch["y"]).pow(2).mean()
        if step == self.nan_loss_at:
            loss = loss * math.nan
        loss.backward()
        self.optimizer.step()
        if step == self.nan_weight_at:
            with torch.no_grad():
                self.model.weight.fill_(math.inf)
        self.losses.append(loss.item())
        return {"loss": loss, "weight_norm": self.model.weight.detach().norm()}

    def state_dict(self):
        return {"modules": {"model": self.model.state_dict()}, "optimizers": {"adam": self.optimizer.state_dict()}}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["modules"]["model"])
        self.optimizer.load_state_dict(state["optimizers"]["adam"])


def _config(**overrides) -> LoopConfig:
    settings = dict(epochs=None, max_steps=10, batch_size=BATCH, seed=7, metrics_every=3,
                    checkpoint_every_s=None, quiet=True, log_every_s=1e9)
    settings.update(overrides)
    return LoopConfig(**settings)


def _run_dir(tmp_path, name="run") -> RunDir:
    return RunDir.create(tmp_path / name, "model M {}\n", "m.dgm", {"seed": 7})


def _resume(tmp_path, name, trainable, config, **kwargs):
    run = RunDir.open(tmp_path / name)
    return run_loop(trainable, _data(), config, run, device=CPU,
                    resume_state=load_checkpoint(run.checkpoint_path), **kwargs)


def _assert_same_parameters(a: LinearTrainable, b: LinearTrainable) -> None:
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[name], tensor), name


# -- data order ----------------------------------------------------------------------


def test_epoch_permutation_depends_only_on_seed_and_epoch():
    rng_before = torch.get_rng_state()
    first = epoch_permutation(50, seed=3, epoch=2)
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    assert torch.equal(first, epoch_permutation(50, seed=3, epoch=2))
    assert torch.equal(first.sort().values, torch.arange(50))
    assert not torch.equal(first, epoch_permutation(50, seed=3, epoch=3))
    assert not torch.equal(first, epoch_permutation(50, seed=4, epoch=2))


def test_compact_data_is_widened_batch_by_batch():
    pixels = (torch.arange(N_ROWS * 6).reshape(N_ROWS, 6) % 3 == 0).to(torch.uint8)
    batches = EpochBatches({"x": pixels, "row": torch.arange(N_ROWS)}, batch_size=BATCH, seed=7,
                           drop_last=False, device=CPU)
    batch, _ = batches.batch(batches.order(0), 0)
    assert batch["x"].dtype == torch.int64  # as validated discrete data comes
    assert torch.equal(batch["x"], pixels[batch["row"]].long())
    assert batches._data["x"].dtype == torch.uint8  # the set itself stays compact


def test_shard_indices_strides_and_balances_ranks():
    order = torch.tensor([9, 3, 7, 1, 0, 5, 2, 8, 6, 4])
    shards = [shard_indices(order, rank, 3) for rank in range(3)]
    assert [s.tolist() for s in shards] == [[9, 1, 2], [3, 0, 8], [7, 5, 6]]
    assert torch.cat(shards).unique().numel() == 9  # disjoint; one row left over
    assert torch.equal(shard_indices(order, 0, 1), order)


def test_epoch_batches_cover_the_epoch_permutation_in_order():
    batches = EpochBatches(_data(), batch_size=BATCH, seed=7, drop_last=False, device=CPU)
    assert batches.batches_per_epoch == 4
    order = batches.order(1)
    parts = [batches.batch(order, position) for position in range(4)]
    assert [n for _, n in parts] == [4, 4, 4, 1]
    rows = torch.cat([batch["row"] for batch, _ in parts])
    assert torch.equal(rows, epoch_permutation(N_ROWS, 7, 1))
    assert torch.equal(parts[0][0]["x"], _data()["x"][rows[:4]])
    dropping = EpochBatches(_data(), batch_size=BATCH, seed=7, drop_last=True, device=CPU)
    assert dropping.batches_per_epoch == 3
    sharded = EpochBatches(_data(), batch_size=BATCH, seed=7, drop_last=False, device=CPU, rank=1, world_size=2)
    assert sharded.rows_per_rank == 6 and sharded.batches_per_epoch == 2
    with pytest.raises(RuntimeUserError, match="larger than the data"):
        EpochBatches(_data(), batch_size=20, seed=7, drop_last=True, device=CPU)


def test_loop_visits_rows_in_the_seeded_order():
    trainable = LinearTrainable()
    run_loop(trainable, _data(), _config(max_steps=7), None, device=CPU)
    expected = torch.cat([epoch_permutation(N_ROWS, 7, 0), epoch_permutation(N_ROWS, 7, 1)[:12]])
    assert trainable.rows == expected.tolist()


@pytest.mark.parametrize(
    ("epochs", "max_steps", "steps"), [(None, None, 4), (2, None, 8), (2, 5, 5), (1, 9, 4), (None, 6, 6)]
)
def test_epochs_and_max_steps_bound_the_run(epochs, max_steps, steps):
    trainable = LinearTrainable()
    result = run_loop(trainable, _data(), _config(epochs=epochs, max_steps=max_steps), None, device=CPU)
    assert result.steps == steps == len(trainable.losses)
    assert result.epochs_done == steps / 4
    assert result.final_loss == trainable.losses[-1] and result.stopped_by is None


# -- resume --------------------------------------------------------------------------


def test_resume_is_bit_for_bit_identical_to_an_uninterrupted_run(tmp_path):
    full = LinearTrainable(seed=0)
    run_loop(full, _data(), _config(max_steps=10), _run_dir(tmp_path, "full"), device=CPU)

    first = LinearTrainable(seed=0)
    result = run_loop(first, _data(), _config(max_steps=6), _run_dir(tmp_path, "part"), device=CPU)
    assert result.checkpoint == tmp_path / "part" / "checkpoint.pt"
    assert load_checkpoint(result.checkpoint)["step"] == 6
    second = LinearTrainable(seed=1)  # other init and RNG state: both must come from the checkpoint
    result = _resume(tmp_path, "part", second, _config(max_steps=10))

    assert result.steps == 10 and result.epochs_done == 2.5
    assert first.losses + second.losses == full.losses
    _assert_same_parameters(full, second)
    adam_full = full.optimizer.state_dict()["state"][0]["exp_avg_sq"]
    assert torch.equal(second.optimizer.state_dict()["state"][0]["exp_avg_sq"], adam_full)


def test_resuming_a_finished_run_does_nothing(tmp_path):
    run_loop(LinearTrainable(), _data(), _config(max_steps=4), _run_dir(tmp_path), device=CPU)
    again = LinearTrainable(seed=1)
    result = _resume(tmp_path, "run", again, _config(max_steps=4))
    assert result.steps == 4 and again.losses == []


def test_resume_with_another_batch_size_is_refused(tmp_path):
    run_loop(LinearTrainable(), _data(), _config(max_steps=4), _run_dir(tmp_path), device=CPU)
    with pytest.raises(RuntimeUserError, match="batch_size = 4, now 3") as info:
        _resume(tmp_path, "run", LinearTrainable(), _config(max_steps=8, batch_size=3))
    assert "--batch-size" in info.value.hint


def test_sigint_stops_after_the_step_and_resume_finishes_the_same_run(tmp_path):
    full = LinearTrainable(seed=0)
    run_loop(full, _data(), _config(max_steps=10), None, device=CPU)
    handler_before = signal.getsignal(signal.SIGINT)

    def interrupt_at_step_3(step, output):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    first = LinearTrainable(seed=0)
    result = run_loop(first, _data(), _config(max_steps=10), _run_dir(tmp_path), device=CPU,
                      on_step=interrupt_at_step_3)
    assert result.stopped_by == "SIGINT" and result.steps == 3 and len(first.losses) == 3
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert load_checkpoint(result.checkpoint)["loop"]["position"] == 3

    second = LinearTrainable(seed=5)
    result = _resume(tmp_path, "run", second, _config(max_steps=10))
    assert result.stopped_by is None and result.steps == 10
    assert first.losses + second.losses == full.losses
    _assert_same_parameters(full, second)


# -- non-finite losses ---------------------------------------------------------------


def test_nan_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    reference = LinearTrainable()
    run_loop(reference, _data(), _config(max_steps=5), None, device=CPU)
    trainable = LinearTrainable(nan_loss_at=6)
    run = _run_dir(tmp_path)
    with pytest.raises(NonFiniteLoss) as info:
        run_loop(trainable, _data(), _config(checkpoint_every_s=0.0), run, device=CPU)
    error = info.value
    assert error.step == 6 and error.last_finite_loss == trainable.losses[4]
    assert f"loss became nan at step 6 (last finite loss {trainable.losses[4]:.6g})" in str(error)
    assert str(run.checkpoint_path) in str(error)
    saved = load_checkpoint(run.checkpoint_path)
    assert saved["step"] == 5
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(saved["trainable"]["modules"]["model"][name], tensor)


def test_nan_detected_late_is_still_reported_at_its_step(tmp_path):
    trainable = LinearTrainable(nan_loss_at=7)
    run = _run_dir(tmp_path)
    with pytest.raises(NonFiniteLoss, match="no checkpoint had been written yet") as info:
        run_loop(trainable, _data(), _config(max_steps=20, metrics_every=2), run, device=CPU)
    assert info.value.step == 7 and info.value.last_finite_loss == trainable.losses[5]
    assert not run.has_checkpoint
    assert [record["step"] for record in run.read_metrics()] == [2, 4, 6]


def test_non_finite_parameters_are_never_checkpointed(tmp_path):
    trainable = LinearTrainable(nan_weight_at=4)
    run = _run_dir(tmp_path)
    with pytest.raises(NonFiniteLoss, match="parameters became non-finite at step 4"):
        run_loop(trainable, _data(), _config(checkpoint_every_s=0.0), run, device=CPU)
    saved = load_checkpoint(run.checkpoint_path)
    assert saved["step"] == 3
    assert torch.isfinite(saved["trainable"]["modules"]["model"]["weight"]).all()


# -- metrics and progress ------------------------------------------------------------


def test_metrics_lines_hold_interval_means(tmp_path):
    trainable = LinearTrainable()
    run = _run_dir(tmp_path)
    run_loop(trainable, _data(), _config(max_steps=10, metrics_every=4), run, device=CPU)
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 10]  # the last one closes the partial interval
    assert [r["epoch"] for r in records] == [1.0, 2.0, 2.5]
    for record, (lo, hi) in zip(records, [(0, 4), (4, 8), (8, 10)]):
        assert record["loss"] == pytest.approx(sum(trainable.losses[lo:hi]) / (hi - lo), rel=1e-12)
        assert record["samples_per_s"] > 0
    assert records[0]["weight_norm"] > 0
    assert records[0]["time"] <= records[1]["time"] <= records[2]["time"]


def test_progress_off_a_terminal_logs_summary_lines():
    stream = io.StringIO()
    progress = Progress(total=10, log_every_s=0.0, stream=stream)
    progress.update(5, 1.5, n_samples=32, extra={"kl": 0.25})
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "step 5/10" in lines[0] and "loss=1.5" in lines[0] and "kl=0.25" in lines[0]
    assert "eta" in lines[0]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream_type", [io.StringIO, _Terminal])
def test_quiet_progress_shows_nothing(stream_type):
    stream = stream_type()
    progress = Progress(total=10, quiet=True, log_every_s=0.0, refresh_s=0.0, stream=stream)
    progress.update(5, 1.5, n_samples=32)
    progress.close()
    assert stream.getvalue() == ""


def test_quiet_loop_prints_nothing(capfd):
    run_loop(LinearTrainable(), _data(), _config(max_steps=10, quiet=True, log_every_s=0.0), None, device=CPU)
    assert capfd.readouterr() == ("", "")


# -- stop requests and devices -------------------------------------------------------


def test_stop_request_turns_signals_into_a_flag_and_restores_handlers():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_second_sigint_quits_at_once():
    with pytest.raises(KeyboardInterrupt), StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stop_request_does_nothing_outside_the_main_thread():
    seen = []

    def enter():
        with StopRequest() as stop:
            seen.append(signal.getsignal(signal.SIGINT))
            seen.append(stop.requested)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler, False]


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    with pytest.raises(RuntimeUserError, match="CUDA was requested") as info:
        resolve_device("cuda")
    assert "--device cpu" in info.value.hint
    with pytest.raises(RuntimeUserError, match="unknown device 'gpu7'"):
        resolve_device("gpu7")
