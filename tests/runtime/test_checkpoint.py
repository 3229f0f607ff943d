"""Checkpoints: round trips, atomic writes, safe loading, RNG capture."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from dgmdsl.runtime.checkpoint import (
    atomic_open,
    capture_rng_state,
    load_checkpoint,
    load_weights_safetensors,
    restore_rng_state,
    save_checkpoint,
    save_weights_safetensors,
)
from dgmdsl.runtime.errors import RuntimeUserError


def _trained_model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        optimizer.step()
    return model, optimizer


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model, optimizer = _trained_model_and_optimizer()
    state = {
        "step": 3,
        "modules": {"model": model.state_dict()},
        "optimizers": {"adam": optimizer.state_dict()},
        "rng": capture_rng_state(),
        "loop": {"last_finite_loss": 0.25, "name": "x", "flag": True, "none": None, "list": [1, 2.5]},
    }
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, state)
    expected_draw = torch.randn(5)

    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and loaded["loop"] == state["loop"]
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    fresh.load_state_dict(loaded["modules"]["model"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.01)
    fresh_optimizer.load_state_dict(loaded["optimizers"]["adam"])
    for index, entry in optimizer.state_dict()["state"].items():
        restored = fresh_optimizer.state_dict()["state"][index]
        assert torch.equal(restored["exp_avg"], entry["exp_avg"])
        assert torch.equal(restored["exp_avg_sq"], entry["exp_avg_sq"])
    # The saved RNG state replays the draw that followed the capture.
    restore_rng_state(loaded["rng"])
    assert torch.equal(torch.randn(5), expected_draw)
    # And the file is readable by the strict loader directly.
    assert torch.load(path, weights_only=True)["step"] == 3


class _PartialWriteError(RuntimeError):
    pass


def _failing_save(obj, handle, *args, **kwargs):
    handle.write(b"PK\x03\x04 partial bytes of a zip archive")
    raise _PartialWriteError("disk full")


def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _failing_save)
    with pytest.raises(_PartialWriteError):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


def test_failed_first_save_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _failing_save)
    with pytest.raises(_PartialWriteError):
        save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1})
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_replaces_whole_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old content that is longer")
    with atomic_open(path) as handle:
        handle.write(b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"], ids=["empty", "text", "zip"]
)
def test_corrupt_file_is_a_user_error(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(RuntimeUserError, match="corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and info.value.hint


def test_truncated_real_checkpoint_is_a_user_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"w": torch.randn(1000)})
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(RuntimeUserError, match="corrupt"):
        load_checkpoint(path)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(RuntimeUserError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")


class _Payload:
    """Unpickling this would run code chosen by whoever wrote the file."""

    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_loading_never_unpickles_arbitrary_objects(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"step": 1, "payload": _Payload()}, handle, protocol=2)
    with pytest.raises(RuntimeUserError):
        load_checkpoint(path)
    buffer = io.BytesIO()
    torch.save({"payload": _Payload()}, buffer)
    (tmp_path / "evil2.pt").write_bytes(buffer.getvalue())
    with pytest.raises(RuntimeUserError):
        load_checkpoint(tmp_path / "evil2.pt")
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_save_rejects_values_that_weights_only_cannot_load(tmp_path):
    with pytest.raises(TypeError, match=r"state\['loop'\]\['mean'\].*ndarray"):
        save_checkpoint(tmp_path / "c.pt", {"loop": {"mean": np.zeros(3)}})
    with pytest.raises(TypeError, match="Path"):
        save_checkpoint(tmp_path / "c.pt", {"paths": [tmp_path]})
    assert not (tmp_path / "c.pt").exists()


def test_safetensors_export_round_trip_with_tied_weights(tmp_path):
    shared = torch.randn(4, 3)
    state = {"encoder.weight": shared, "decoder.weight": shared, "bias": torch.arange(3.0)}
    path = tmp_path / "model.safetensors"
    save_weights_safetensors(path, state)
    loaded = load_weights_safetensors(path)
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor)
    path.write_bytes(b"garbage")
    with pytest.raises(RuntimeUserError, match="corrupt"):
        load_weights_safetensors(path)
