"""fit / open_run / compile / query from Python; the CLI calls these too."""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..families import build_model
from ..frontend.values import CallValue, Sym
from ..inference import get_engine
from ..inference.base import TrainSettings, describe_optimizers
from .checkpoint import load_checkpoint, load_trainable_state
from .datasets import DataSource, load_split, parse_data_option, resolve_source
from .device import resolve_device
from .errors import RuntimeUserError
from .fitted import FittedRun
from .rundir import RunDir

__all__ = ["compile_model", "fit_model", "open_run", "query_model", "resolve_settings", "DEFAULTS"]

# Defaults where the spec and the command line say nothing; a backend class may
# override any of them with its `default_settings` (the papers' settings differ).
DEFAULTS = {"lr": 1e-3, "epochs": 10, "batch_size": 128, "seed": 0}


def compile_model(model, device: str | torch.device = "cpu"):
    """The untrained compiled backend model of `model` (a dgmdsl.Model)."""
    try:
        compiled = build_model(model.ir)
    except NotImplementedError as exc:
        raise RuntimeUserError(str(exc), hint="`dgm explain` shows the family; see README for what is implemented")
    return compiled.to(resolve_device(device) if isinstance(device, str) else device)


def _positional_names(name: str) -> tuple[str, ...]:
    from ..frontend.catalog import DISTRIBUTIONS
    from ..frontend.options_schema import LR_SCHEDULE_CTORS, METHODS, SAMPLE_METHODS
    if name in DISTRIBUTIONS:
        info = DISTRIBUTIONS[name]
        return tuple(p for p in info.params if not any(p in g[1:] for g in info.exclusive))
    for table in (METHODS, SAMPLE_METHODS, LR_SCHEDULE_CTORS):
        if name in table:
            return table[name].positional
    return ()


def _plain(value):
    """Option values as JSON-able data; a call's positional arguments get their names."""
    if isinstance(value, Sym):
        return value.name
    if isinstance(value, CallValue):
        named = dict(zip(_positional_names(value.name), value.args))
        extra = value.args[len(named):]
        out = {"name": value.name, **{k: _plain(v) for k, v in named.items()},
               **{k: _plain(v) for k, v in value.kwargs}}
        if extra:
            out["args"] = [_plain(v) for v in extra]
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _optimizer(value, lr: float | None, default_lr: float) -> tuple[str, dict]:
    if isinstance(value, CallValue):
        opts = {k: _plain(v) for k, v in value.kwargs}
        if value.args:
            opts.setdefault("lr", value.args[0])
        name = value.name
    elif isinstance(value, Sym):
        name, opts = value.name, {}
    else:
        name, opts = "adam", {}
    opts.setdefault("lr", default_lr)
    if lr is not None:
        opts["lr"] = lr
    return name, opts


def _lr_schedule(given, fit) -> dict | None:
    """`--lr-schedule` / `lr_schedule=` (text such as "cosine(warmup = 100)", or a dict)
    over the fit block's `lr_schedule`."""
    if given is None:
        return _plain(fit["lr_schedule"]) if "lr_schedule" in fit else None
    if isinstance(given, dict):
        return given
    from .schedules import parse_lr_schedule
    return parse_lr_schedule(str(given))


def resolve_settings(model, *, epochs=None, max_steps=None, batch_size=None, lr=None, seed=None,
                     quiet=False, precision="fp32", compile=False, placement=None,
                     metrics_every=None, lr_schedule=None, patience=None, validate_every=None) -> TrainSettings:
    """Command line over the fit block over family defaults."""
    fit = model.checked.fit
    from ..families import backend_class
    cls = backend_class(model.checked.family)
    defaults = {**DEFAULTS, **(getattr(cls, "default_settings", None) or {})}
    method = model.checked.method
    pick = lambda cli, key: cli if cli is not None else (fit[key] if key in fit else defaults.get(key))  # noqa: E731
    return TrainSettings(
        epochs=pick(epochs, "epochs") if max_steps is None or epochs is not None else fit.get("epochs"),
        max_steps=pick(max_steps, "max_steps"),
        batch_size=int(pick(batch_size, "batch_size")),
        seed=int(pick(seed, "seed")),
        optimizer=_optimizer(fit.get("optimizer"), lr, defaults["lr"]),
        critic_optimizer=_optimizer(fit["critic_optimizer"], lr, defaults["lr"]) if "critic_optimizer" in fit else None,
        method_options={k: _plain(v) for k, v in method.options.items()},
        grad_clip=fit.get("grad_clip"),
        lr_schedule=_lr_schedule(lr_schedule, fit),
        patience=pick(patience, "patience"),
        validate_every=pick(validate_every, "validate_every"),
        quiet=quiet,
        precision=precision,
        compile=compile,
        metrics_every=metrics_every or TrainSettings.metrics_every,
        rank=placement.rank if placement else 0,
        world_size=placement.world_size if placement else 1,
    )


def _data_source(model, data) -> DataSource:
    if data is not None:
        return parse_data_option(str(data)) if not isinstance(data, DataSource) else data
    if "data" not in model.checked.fit:
        # a method may bring its own data (distillation reads the teacher's held-out split)
        override = getattr(_engine(model.checked.method.name), "data_source_override", None)
        source = override(model) if override else None
        if source is not None:
            return source
        raise RuntimeUserError(f"model {model.name} names no data", hint="add `fit { data = ... }` or pass --data")
    return resolve_source(model.checked.fit["data"])


def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _config(model, settings: TrainSettings, source: DataSource, device: torch.device, data_dir=None) -> dict:
    return {"model": model.name, "family": model.checked.family, "method": model.checked.method.name,
            "spec_file": str(model.program.path) if model.program.path else None,
            "data": source.to_json(), "data_dir": str(data_dir) if data_dir else None,
            "settings": asdict(settings), "device": str(device)}


def fit_model(model, *, data=None, data_dir=None, epochs=None, max_steps=None, batch_size=None, lr=None,
              seed=None, device="auto", out=None, resume=False, quiet=False, overwrite=False,
              precision="fp32", compile=False, metrics_every=None, lr_schedule=None, patience=None,
              validate_every=None) -> FittedRun:
    """Train `model`; writes a run directory (a temporary one if `out` is None). Under
    torch.distributed (torchrun, or `dgm fit --nproc`) every process calls this; rank 0
    alone writes the run directory. `patience` stops on the held-out split (see
    runtime/early_stopping.py)."""
    from .distributed import from_environment, init_process_group

    placement = from_environment()
    if resume and out is not None:
        saved = _saved_settings(out)
        epochs = epochs if epochs is not None else saved.get("epochs")
        max_steps = max_steps if max_steps is not None else saved.get("max_steps")
        batch_size = batch_size if batch_size is not None else saved.get("batch_size")
        seed = seed if seed is not None else saved.get("seed")
        lr = lr if lr is not None else (saved.get("optimizer") or [None, {}])[1].get("lr")
        lr_schedule = lr_schedule if lr_schedule is not None else saved.get("lr_schedule")
        patience = patience if patience is not None else saved.get("patience")
        validate_every = validate_every if validate_every is not None else saved.get("validate_every")
        if data is None and saved.get("data", {}).get("path"):
            data = saved["data"]["path"]
    settings = resolve_settings(model, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
                                seed=seed, quiet=quiet, precision=precision, compile=compile,
                                placement=placement, metrics_every=metrics_every, lr_schedule=lr_schedule,
                                patience=patience, validate_every=validate_every)
    _check_early_stopping(settings, model.checked.method.name)
    if precision not in ("fp32", "bf16", "fp16"):
        raise RuntimeUserError(f"unknown precision '{precision}'", hint="use fp32, bf16 or fp16")
    dev = resolve_device(device)
    if placement.distributed:
        if out is None:
            raise RuntimeUserError("distributed training needs --out (every process must see the run directory)")
        dev = init_process_group(placement, dev)
    source = _data_source(model, data)
    torch.manual_seed(settings.seed)
    compiled = compile_model(model, dev)
    arrays = load_split(source, "train", compiled.var_specs(), data_dir=data_dir, program=model.program)
    tensors = to_tensors(arrays)
    heldout = _heldout_rows(model, source, compiled, data_dir) if settings.patience is not None else None
    run_dir, resume_state = _run_dir(model, settings, source, dev, out, resume, overwrite, placement.rank, data_dir)
    engine = _engine(model.checked.method.name)(compiled, settings)
    engine.heldout = heldout
    optimizers = describe_optimizers(engine)
    if placement.distributed and not hasattr(engine, "train_step"):
        raise RuntimeUserError(f"{model.checked.method.name} does not train by minibatch gradient, so it "
                               "cannot be split over processes", hint="run it without --nproc / torchrun")
    if resume_state is None:
        compiled.initialize(tensors)
    if not any(p.requires_grad for p in compiled.parameters()) and hasattr(engine, "train_step"):
        result = {"steps": 0, "note": "nothing to learn: every conditional is fixed"}
        _save_state(run_dir, engine)
    else:
        result = engine.fit(tensors, run_dir if placement.rank == 0 else None, resume_state, dev)
    if optimizers:
        result = {**result, "optimizers": optimizers}
    if placement.rank == 0:
        run_dir.write_json("fit_result.json", result)
    return FittedRun(model, compiled, engine, run_dir, data_source=source, data_dir=data_dir, fit_result=result)


def _check_early_stopping(settings: TrainSettings, method: str) -> None:
    """Refuse, before any data is loaded, what early stopping cannot do."""
    for name in ("patience", "validate_every"):
        value = getattr(settings, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RuntimeUserError(f"{name} must be a positive integer, got {value!r}")
    if settings.patience is None:
        if settings.validate_every is not None:
            raise RuntimeUserError("validate_every sets how often patience checks the held-out split, "
                                   "but no patience is given", hint="add `patience = P` (or --patience P)")
        return
    if not getattr(_engine(method), "validates", False):
        raise RuntimeUserError(f"patience selects on a held-out loss, and {method} has none that measures "
                               "fit to held-out data",
                               hint="drop patience: fit for a fixed length and compare runs with `dgm eval`")


def _heldout_rows(model, source: DataSource, compiled, data_dir) -> dict[str, torch.Tensor]:
    """The split `dgm eval` reads by default (binarized MNIST's valid split, a generated
    set drawn with seed + 1), its first MAX_HELDOUT_ROWS rows."""
    from .early_stopping import MAX_HELDOUT_ROWS
    if source.path is not None:
        raise RuntimeUserError(f"patience needs a held-out split, and the data file {source.path} has none",
                               hint="use a named data set, or drop patience and compare runs on your "
                                    "held-out file with `dgm eval RUN --data FILE`")
    with torch.random.fork_rng(devices=[]):  # drawing a `samples(...)` split must not move training's stream
        arrays = load_split(source, "heldout", compiled.var_specs(), data_dir=data_dir, program=model.program)
    return to_tensors({name: values[:MAX_HELDOUT_ROWS] for name, values in arrays.items()})


def _saved_settings(out) -> dict:
    """A run's recorded settings (and data source), so `--resume` needs no flags repeated."""
    run = RunDir.open(out)
    config = json.loads(run.config_path.read_text())
    return {**config.get("settings", {}), "data": config.get("data", {})}


def _save_state(run_dir: RunDir, engine) -> None:
    from .checkpoint import save_checkpoint
    save_checkpoint(run_dir.checkpoint_path, {"trainable": engine.state_dict(), "step": 0})


def _run_dir(model, settings, source, device, out, resume, overwrite, rank=0, data_dir=None):
    if out is None:
        out = tempfile.mkdtemp(prefix=f"dgm-{model.name}-")
        overwrite = True
    if rank > 0:  # only rank 0 writes; the others read the checkpoint to resume
        run = RunDir(out)
        return run, load_checkpoint(run.checkpoint_path) if resume else None
    if resume:
        run = RunDir.open(out)
        if not run.has_checkpoint:
            raise RuntimeUserError(f"{out} has no checkpoint to resume from", hint="start it without --resume")
        return run, load_checkpoint(run.checkpoint_path)
    spec_text = model.program.source.text
    config = _config(model, settings, source, device, data_dir)
    return RunDir.create(out, spec_text, model.name, config, overwrite), None


def _engine(method: str):
    try:
        return get_engine(method)
    except NotImplementedError as exc:
        raise RuntimeUserError(str(exc), hint="see README for what is implemented") from None


def open_run(path, device: str = "auto", data_dir=None) -> FittedRun:
    """Reload a fitted run: recompile its spec, load its checkpoint (weights only)."""
    from ..api import loads

    run = RunDir.open(path)
    config = json.loads(run.config_path.read_text())
    program = loads(run.read_spec(), str(run.spec_path))
    model = program[config["model"]]
    if config.get("spec_file"):
        program.path = Path(config["spec_file"])
    dev = resolve_device(device)
    compiled = compile_model(model, dev)
    settings = TrainSettings(**{k: (tuple(v) if k in ("optimizer", "critic_optimizer") and v else v)
                                for k, v in config["settings"].items()})
    engine = _engine(config["method"])(compiled, settings)
    if not run.has_checkpoint:
        raise RuntimeUserError(f"{path} has no checkpoint", hint="its fit did not finish a step; fit it again")
    state = load_checkpoint(run.checkpoint_path, map_location=dev)
    load_trainable_state(engine, state["trainable"], run.checkpoint_path)
    compiled.eval()
    return FittedRun(model, compiled, engine, run, data_source=DataSource.from_json(config["data"]),
                     data_dir=data_dir or config.get("data_dir"))


def query_model(model, query: str, **options):
    """Exact posterior marginals of an untrained (fixed-table) model."""
    compiled = compile_model(model)
    compiled.eval()
    from ..inference.variable_elimination import answer_query
    return answer_query(compiled, query, **options)
