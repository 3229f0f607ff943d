"""The run directory: spec, resolved config, metrics and checkpoint of one fit.

Layout (one checkpoint, only ever replaced atomically by a finite state)::

    RUN_DIR/spec.dgm            the spec text as fitted
    RUN_DIR/config.json         the resolved configuration (sorted, indented)
    RUN_DIR/run.json            bookkeeping: spec file name, layout version
    RUN_DIR/metrics.jsonl       one JSON record every few steps
    RUN_DIR/checkpoint.pt       latest good training state (torch, weights_only)
    RUN_DIR/model.safetensors   exported final weights (written by the caller)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO, Any

from dgmdsl.runtime.checkpoint import atomic_open
from dgmdsl.runtime.errors import RuntimeUserError

__all__ = ["RunDir"]

_LAYOUT_VERSION = 1


class RunDir:
    """Files of one training run; build with :meth:`create` or :meth:`open`."""

    SPEC = "spec.dgm"
    CONFIG = "config.json"
    RUN_INFO = "run.json"
    METRICS = "metrics.jsonl"
    CHECKPOINT = "checkpoint.pt"
    WEIGHTS = "model.safetensors"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._metrics_file: IO[str] | None = None

    # -- construction ---------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        spec_text: str,
        spec_name: str,
        config: dict[str, Any],
        overwrite: bool = False,
    ) -> RunDir:
        """Start a new run in ``path``, refusing to clobber a run that has a checkpoint."""
        run = cls(path)
        run._check_can_start(overwrite)
        run.path.mkdir(parents=True, exist_ok=True)
        # A fresh run starts without the outputs of an earlier one.
        for name in (cls.CHECKPOINT, cls.METRICS, cls.WEIGHTS):
            (run.path / name).unlink(missing_ok=True)
        with atomic_open(run.spec_path) as handle:
            handle.write(spec_text.encode("utf-8"))
        run.write_json(cls.CONFIG, config)
        run.write_json(cls.RUN_INFO, {"layout_version": _LAYOUT_VERSION, "spec_name": spec_name})
        return run

    def _check_can_start(self, overwrite: bool) -> None:
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise RuntimeUserError(
                f"{self.path} exists and is not a directory", hint="choose another --out"
            )
        if overwrite:
            return
        if self.has_checkpoint:
            raise RuntimeUserError(
                f"{self.path} already holds a run with a checkpoint",
                hint="use --resume to continue it, or choose another --out",
            )
        if not self.config_path.is_file() and any(self.path.iterdir()):
            raise RuntimeUserError(
                f"{self.path} is not empty and is not a dgmdsl run directory",
                hint="choose a new or empty directory for --out",
            )

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """An existing run directory, checked to hold a spec and a config."""
        run = cls(path)
        if not run.path.is_dir():
            raise RuntimeUserError(
                f"no run directory at {run.path}",
                hint="fit one first with `dgm fit SPEC --out RUN_DIR`",
            )
        for required in (run.spec_path, run.config_path):
            if not required.is_file():
                raise RuntimeUserError(
                    f"{run.path} is not a complete run directory ({required.name} is missing)",
                    hint="fit it again with `dgm fit SPEC --out RUN_DIR`",
                )
        return run

    # -- paths ----------------------------------------------------------------------

    @property
    def spec_path(self) -> Path:
        return self.path / self.SPEC

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def weights_path(self) -> Path:
        return self.path / self.WEIGHTS

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    # -- reading --------------------------------------------------------------------

    def read_spec(self) -> str:
        return self.spec_path.read_text(encoding="utf-8")

    def read_config(self) -> dict[str, Any]:
        return self.read_json(self.CONFIG)

    @property
    def spec_name(self) -> str | None:
        """The name of the spec file the run was created from, when recorded."""
        info_path = self.path / self.RUN_INFO
        return self.read_json(self.RUN_INFO).get("spec_name") if info_path.is_file() else None

    def read_json(self, name: str) -> Any:
        target = self._file(name)
        try:
            return json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RuntimeUserError(f"{target} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RuntimeUserError(f"{target} is not valid JSON ({error})") from None

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete metric records (a torn last line from a crash is skipped)."""
        self.flush()
        if not self.metrics_path.is_file():
            return []
        return _parse_json_lines(self.metrics_path.read_text(encoding="utf-8"))

    # -- writing --------------------------------------------------------------------

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as indented JSON with sorted keys, atomically."""
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
        with atomic_open(self._file(name)) as handle:
            handle.write(text.encode("utf-8"))

    def append_metrics(self, records: list[dict[str, Any]]) -> None:
        """Append records as JSON lines; buffered until :meth:`flush` or :meth:`close`."""
        if not records:
            return
        if self._metrics_file is None:
            self._metrics_file = self.metrics_path.open("a", encoding="utf-8")
        self._metrics_file.writelines(_json_line(record) for record in records)

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records past ``last_step``: written after the checkpoint a run resumes from."""
        records = self.read_metrics()
        kept = [record for record in records if record.get("step", 0) <= last_step]
        if len(kept) == len(records) and self._ends_with_newline():
            return
        self.close()
        with atomic_open(self.metrics_path) as handle:
            handle.write("".join(_json_line(record) for record in kept).encode("utf-8"))

    def _ends_with_newline(self) -> bool:
        data = self.metrics_path.read_bytes() if self.metrics_path.is_file() else b""
        return not data or data.endswith(b"\n")

    def flush(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.flush()

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _file(self, name: str) -> Path:
        if not name or Path(name).name != name:
            raise ValueError(f"run directory file names must be plain names, got {name!r}")
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def _json_line(record: dict[str, Any]) -> str:
    # Strict JSON has no NaN/inf; a non-finite metric is recorded as null.
    clean = {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in record.items()
    }
    return json.dumps(clean, allow_nan=False) + "\n"


def _parse_json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
