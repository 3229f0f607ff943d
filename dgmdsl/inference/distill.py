"""Probability density distillation (Parallel WaveNet): `method = distill(teacher = "RUN")`.

The student, a flow that samples in one pass (IAF), minimises KL(student || teacher) =
E_q[log q(x) - log p(x)] on its own reparameterised samples: one z -> x pass gives the
samples with their log-density, and the teacher (a fitted flow run, read from the working
directory by `fit` only) scores them in one pass if it is a MAF. The student needs no data
of its own: its data source, and so its held-out split, is the teacher's.

The teacher's spec, model name and weights go into the student's checkpoint, so a reopened
run (resume, `dgm eval`) rebuilds the teacher without its directory; `dgm eval` reports the
KL estimate and both models' held-out NLL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..frontend import ast as A
from ..frontend.checked import CheckedModel
from ..frontend.diagnostics import DgmError
from ..runtime.datasets import DataSource
from ..runtime.errors import RuntimeUserError
from .base import GradientEngine

__all__ = ["Distill", "teacher_path", "check_teacher_config"]


def teacher_path(model: CheckedModel) -> Path:
    """The teacher run directory, relative to the working directory."""
    return Path(str(model.method.options["teacher"]))


def _teacher_span(model: CheckedModel):
    """The `teacher = "..."` value in the fit block, else the whole method option."""
    method = model.fit.get("method")
    call = getattr(method, "expr", None)
    for arg in getattr(call, "args", ()):
        if arg.name == "teacher" or (arg.name is None and isinstance(arg.value, A.Str)):
            return arg.value.span
    return model.method.span


def _error(model: CheckedModel, message: str, hint: str | None = None) -> DgmError:
    from ..families.flow import spec_error
    return spec_error(model, _teacher_span(model), message, hint)


def _student_target(model: CheckedModel):
    targets = [v for v in model.data_vars if v.construct == "flow"]
    if len(targets) != 1:
        raise _error(model, f"distillation needs a student with one flow-defined data variable, "
                            f"{model.name} has {len(targets)}")
    return targets[0]


def check_teacher_config(model: CheckedModel) -> dict:
    """Open the teacher run's config and spec (no weights) and check it fits the student.

    Returns the teacher's config; raises a DgmError located at `teacher = "..."`.
    """
    from ..api import loads
    from ..runtime.rundir import RunDir

    path = teacher_path(model)
    fit_hint = f"fit the teacher first: dgm fit TEACHER.dgm --out {path}"
    if not path.is_dir():
        raise _error(model, f"teacher run '{path}' not found (looked in {path.resolve()})", fit_hint)
    try:
        run = RunDir.open(path)
        config = run.read_config()
        teacher = loads(run.read_spec(), str(run.spec_path))[config["model"]].checked
    except (RuntimeUserError, KeyError, ValueError, OSError) as exc:
        raise _error(model, f"teacher run '{path}' cannot be read: {exc}", fit_hint) from None
    except DgmError as exc:
        raise _error(model, f"teacher run '{path}' holds a spec that does not check: "
                            f"{exc.diagnostics[0].message}", fit_hint) from None
    if not run.has_checkpoint:
        raise _error(model, f"teacher run '{path}' has no checkpoint: its fit did not finish a step", fit_hint)
    if config.get("family") != "flow":
        raise _error(model, f"teacher run '{path}' holds {teacher.name}, a {config.get('family')} model, not a "
                            "flow: distillation needs a teacher with an exact density", fit_hint)
    student_var = _student_target(model)
    targets = [v for v in teacher.data_vars if v.construct == "flow"]
    if len(targets) != 1 or targets[0].type.size != student_var.type.size or \
            targets[0].type.discrete != student_var.type.discrete or targets[0].type.k != student_var.type.k:
        shown = ", ".join(f"{v.name} : {v.type}" for v in targets) or "no flow-defined data"
        raise _error(model, f"teacher run '{path}' models {shown}, but the student's {student_var.name} is "
                            f"{student_var.type}: the teacher must model the same dimension and type",
                     "distil from a teacher fitted on the same data")
    return config


class Distill(GradientEngine):
    """Minimise the Monte Carlo KL(student || teacher) on `samples` student draws per step."""

    name = "distill"
    validates = False  # the loss is on the student's own samples: held-out data never enters it

    def __init__(self, model, settings) -> None:
        super().__init__(model, settings)
        # not `samples`: FittedRun reads an engine's `samples` as posterior draws
        self.n_samples = int(settings.method_options.get("samples") or settings.batch_size)
        self.teacher = None
        self.teacher_record: dict | None = None

    @classmethod
    def data_source_override(cls, model) -> DataSource | None:
        """The teacher's data source when the spec names no data (for the runtime's `fit`)."""
        if "data" in model.checked.fit:
            return None
        return DataSource.from_json(check_teacher_config(model.checked)["data"])

    # ---- the teacher ------------------------------------------------------------------
    def _load_teacher(self, device) -> None:
        from ..runtime.api import open_run

        spec = self.model.spec
        check_teacher_config(spec)
        try:
            fitted = open_run(teacher_path(spec), device=str(device))
        except RuntimeUserError as exc:
            raise _error(spec, f"teacher run '{teacher_path(spec)}' cannot be loaded: {exc}",
                         getattr(exc, "hint", None)) from None
        self.teacher_record = {"path": str(teacher_path(spec)), "spec": fitted.run_dir.read_spec(),
                               "model": fitted.model.name, "filename": str(fitted.run_dir.spec_path),
                               "state": fitted.compiled.state_dict()}
        self._attach(fitted.compiled)

    def _rebuild_teacher(self, record: dict) -> None:
        from ..api import loads
        from ..families import build_model

        teacher = build_model(loads(record["spec"], record["filename"])[record["model"]].ir)
        teacher.load_state_dict(record["state"])
        self.teacher_record = record
        self._attach(teacher.to(self.model.device))

    def _attach(self, teacher) -> None:
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher.eval()
        self.model.set_teacher(teacher, self.teacher_record["path"])

    # ---- training ----------------------------------------------------------------------
    def fit(self, data, run_dir, resume_state, device) -> dict:
        saved = ((resume_state or {}).get("trainable") or {}).get("teacher")
        if saved is not None:
            self._rebuild_teacher(saved)  # a resumed run keeps the teacher it started with
        elif self.teacher is None:
            self._load_teacher(device)
        return super().fit(data, run_dir, resume_state, device)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """KL(student || teacher) on fresh student samples; the data batch is not used."""
        values, log_q = self.model.sample_with_log_prob(self.n_samples)
        return (log_q - self.teacher.continuous_log_prob(values)).mean()

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.teacher_record is not None:
            state["teacher"] = self.teacher_record
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("teacher") is not None and state["teacher"] is not self.teacher_record:
            self._rebuild_teacher(state["teacher"])
