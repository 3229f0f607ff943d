"""Run directories: layout, refusal to clobber, metrics lines."""

from __future__ import annotations

import json

import pytest

from dgmdsl.runtime.errors import RuntimeUserError
from dgmdsl.runtime.rundir import RunDir

SPEC = "model M {\n    x ~ Normal(0, 1)\n}\n"


def _create(path, **kwargs) -> RunDir:
    return RunDir.create(path, SPEC, "toy.dgm", {"seed": 3, "batch_size": 16, "alpha": [1, 2]}, **kwargs)


def test_create_writes_spec_and_sorted_indented_config(tmp_path):
    run = _create(tmp_path / "run" / "nested")
    assert run.spec_path.read_text() == SPEC
    text = run.config_path.read_text()
    assert text == json.dumps({"alpha": [1, 2], "batch_size": 16, "seed": 3}, indent=2, sort_keys=True) + "\n"
    assert run.read_config() == {"seed": 3, "batch_size": 16, "alpha": [1, 2]}
    assert run.spec_name == "toy.dgm"
    assert not run.has_checkpoint
    assert run.checkpoint_path.name == "checkpoint.pt" and run.metrics_path.name == "metrics.jsonl"


def test_create_refuses_a_run_with_a_checkpoint(tmp_path):
    run = _create(tmp_path / "run")
    run.checkpoint_path.write_bytes(b"checkpoint")
    with pytest.raises(RuntimeUserError, match="already holds a run") as info:
        _create(tmp_path / "run")
    assert "--resume" in info.value.hint and "--out" in info.value.hint
    assert run.checkpoint_path.read_bytes() == b"checkpoint"


def test_overwrite_starts_a_fresh_run(tmp_path):
    run = _create(tmp_path / "run")
    run.checkpoint_path.write_bytes(b"checkpoint")
    run.metrics_path.write_text('{"step": 1}\n')
    again = _create(tmp_path / "run", overwrite=True)
    assert not again.has_checkpoint and not again.metrics_path.exists()


def test_run_without_checkpoint_may_be_restarted(tmp_path):
    run = _create(tmp_path / "run")
    run.metrics_path.write_text('{"step": 1}\n')
    again = _create(tmp_path / "run")
    assert again.read_metrics() == []


def test_create_refuses_an_unrelated_non_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeUserError, match="not a dgmdsl run directory"):
        _create(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RuntimeUserError, match="not a directory"):
        _create(tmp_path / "file")


def test_open_validates_the_directory(tmp_path):
    with pytest.raises(RuntimeUserError, match="no run directory"):
        RunDir.open(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "spec.dgm").write_text(SPEC)
    with pytest.raises(RuntimeUserError, match="config.json is missing"):
        RunDir.open(tmp_path / "half")
    _create(tmp_path / "run")
    assert RunDir.open(tmp_path / "run").read_spec() == SPEC


def test_metrics_are_buffered_then_written_as_json_lines(tmp_path):
    run = _create(tmp_path / "run")
    run.append_metrics([{"step": 1, "loss": 0.5}, {"step": 2, "loss": float("nan")}])
    run.append_metrics([{"step": 3, "loss": 0.25}])
    run.close()
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "loss": 0.5},
        {"step": 2, "loss": None},  # strict JSON has no NaN
        {"step": 3, "loss": 0.25},
    ]


def test_truncate_metrics_drops_records_after_the_checkpoint_and_torn_lines(tmp_path):
    run = _create(tmp_path / "run")
    run.metrics_path.write_text('{"step": 2}\n{"step": 4}\n{"step": 6}\n{"step": 8, "lo')
    run.truncate_metrics(4)
    assert run.metrics_path.read_text() == '{"step": 2}\n{"step": 4}\n'
    run.append_metrics([{"step": 5}])
    run.close()
    assert [r["step"] for r in run.read_metrics()] == [2, 4, 5]


def test_write_json_is_atomic_and_rejects_paths(tmp_path):
    run = _create(tmp_path / "run")
    run.write_json("eval.json", {"b": 1, "a": 2})
    assert run.read_json("eval.json") == {"a": 2, "b": 1}
    with pytest.raises(ValueError):
        run.write_json("bad.json", {"x": float("inf")})
    assert run.read_json("eval.json") == {"a": 2, "b": 1}
    with pytest.raises(ValueError, match="plain names"):
        run.write_json("../escape.json", {})
    leftovers = [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
