"""`dgm fit | sample | eval | query | data`: the commands that run models. Torch is
imported only when one of them runs."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

__all__ = ["add_run_commands"]


def _user_errors():
    """Exception types that are user mistakes, printed as `error: ...` with a hint."""
    from .data import DataError
    from .inference.variable_elimination import QueryError
    from .runtime.errors import RuntimeUserError
    return DataError, QueryError, RuntimeUserError


def _as_user_error(exc, UserError):
    """`exc` (one of `_user_errors()`) as the command line's UserError: the message, its
    hint and, for a DataError, where it is (file, variable, row), each printed once."""
    from .data import DataError

    if isinstance(exc, DataError):
        return UserError(exc.message, exc.hint, where=exc.where)
    return UserError(str(exc), getattr(exc, "hint", None))


def _guard(fn, UserError):
    def run(args):
        try:
            return fn(args)
        except _user_errors() as exc:
            raise _as_user_error(exc, UserError) from None
    return run


def _model_from(path: str, name: str | None):
    from .api import load

    program = load(path)
    if name is None:
        if len(program) != 1:
            from .frontend.diagnostics import DgmError, Diagnostic
            from .frontend.spans import NO_SPAN
            raise DgmError([Diagnostic(NO_SPAN, f"{len(program)} models in this file ({', '.join(program)})",
                                       "choose one with --model NAME", filename=path)])
        return program.models[0]
    return program[name]


def _is_run_dir(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def _fit_options(args) -> dict:
    return dict(data=args.data, data_dir=args.data_dir, epochs=args.epochs, max_steps=args.max_steps,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device, out=args.out,
                resume=args.resume, quiet=args.quiet, precision=args.precision, compile=args.compile,
                metrics_every=args.metrics_every, lr_schedule=args.lr_schedule, patience=args.patience,
                validate_every=args.validate_every)


def _fit_worker(spec: str, model_name: str | None, options: dict, reports: str) -> None:
    """One process of `dgm fit --nproc N` (module level: it is pickled into the child).

    torch's spawn would show a user error as a bug's traceback, so the error is
    rendered into `reports/rank<R>.txt` for the parent to print, and the process exits 1."""
    import gc
    import os

    from .cli import UserError
    from .frontend.diagnostics import DgmError
    from .runtime.api import fit_model
    from .runtime.distributed import shutdown

    try:
        fit_model(_model_from(spec, model_name), **options)
    except (DgmError, *_user_errors()) as exc:
        text = exc.render() if isinstance(exc, DgmError) else _as_user_error(exc, UserError).render()
        (Path(reports) / f"rank{os.environ['RANK']}.txt").write_text(text)
        raise SystemExit(1) from None
    finally:
        gc.collect()  # free the DDP wrappers (and their gloo work) while the group is alive
        shutdown()
    # Every file is written and closed by now. Skipping the interpreter's teardown avoids a
    # rare SIGABRT ("terminate called without an active exception") from gloo threads still
    # joinable when static destructors run, seen about once in 16 two-process runs.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_fit(args) -> int:
    from .runtime.api import fit_model, open_run

    model = _model_from(args.spec, args.model)
    if args.nproc > 1:
        import tempfile

        from torch.multiprocessing.spawn import ProcessException

        from .runtime.distributed import spawn
        from .runtime.errors import RuntimeUserError

        if args.out is None:
            raise RuntimeUserError("--nproc needs --out", hint="name the run directory all processes share")
        from .runtime.api import _engine
        if not hasattr(_engine(model.method), "train_step"):
            raise RuntimeUserError(f"{model.method} does not train by minibatch gradient, so it cannot be "
                                   "split over processes", hint="run it without --nproc")
        with tempfile.TemporaryDirectory(prefix="dgm-fit-") as reports:
            try:
                spawn(args.nproc, _fit_worker, args.spec, args.model, _fit_options(args), reports)
            except ProcessException as exc:  # the first process to fail; the others were stopped
                report = Path(reports) / f"rank{exc.error_index}.txt"
                if not report.is_file():
                    raise
                print(report.read_text(), file=sys.stderr)
                return 1
        run = open_run(args.out, device="cpu")
        run.fit_result = json.loads((run.path / "fit_result.json").read_text())
    else:
        from .runtime.distributed import from_environment, shutdown
        placement = from_environment()  # set by torchrun
        try:
            run = fit_model(model, **_fit_options(args))
        finally:
            if placement.distributed:
                shutdown()
        if placement.rank > 0:
            return 0
    result = run.fit_result
    print(f"model {model.name}: {model.method} on {run.data_source.describe()}")
    for key in ("steps", "epochs", "penalty", "clip", "final_loss", "best_step", "best_valid_loss", "elapsed_s",
                "stopped_by", "note"):
        if result.get(key) is not None:
            print(f"  {key}: {result[key]}")
    for name, optimizer in (result.get("optimizers") or {}).items():
        print(f"  {name}: {optimizer}")
    if "posterior" in result:
        _print_posterior(result["posterior"])
    print(f"run directory: {run.path}")
    if result.get("stopped_by") not in (None, "patience"):  # patience ends a run; a signal pauses it
        print(f"stopped by {result['stopped_by']}; continue with: dgm fit {args.spec} --out {run.path} --resume")
        return 130
    return 0


def _print_posterior(post: dict) -> None:
    print("  posterior (per element): mean, sd, ess, r_hat")
    for name, stats in post.items():
        for i, row in enumerate(zip(stats["mean"], stats["sd"], stats["ess"], stats["r_hat"])):
            label = f"{name}[{i}]" if len(stats["mean"]) > 1 else name
            print(f"    {label:10s} {row[0]: .4f} {row[1]: .4f} {row[2]:8.1f} {row[3]:.3f}")


def _open(args):
    from .runtime.api import compile_model, fit_model, open_run

    if _is_run_dir(args.target):
        return open_run(args.target, device=getattr(args, "device", "auto"))
    model = _model_from(args.target, args.model)
    return model


def cmd_sample(args) -> int:
    import numpy as np

    from .runtime.fitted import FittedRun

    target = _open(args)
    if not isinstance(target, FittedRun):
        from .runtime.api import compile_model
        compiled = compile_model(target)
        if any(p.requires_grad for p in compiled.parameters()):
            print(f"note: {target.name} is untrained; sampling its initial parameters "
                  "(fit it first for a trained model)", file=sys.stderr)
        out = {k: v.cpu().numpy() for k, v in compiled.sample(args.n, seed=args.seed).items()}
    else:
        out = target.sample(args.n, seed=args.seed, data=args.data)
    _write_samples(out, args.out, target)
    return 0


def _write_samples(samples: dict, out: str | None, target) -> None:
    import numpy as np

    if out is None:
        for name, values in samples.items():
            print(f"{name}: shape {list(values.shape)}")
            print(np.array2string(values[:10], precision=4, threshold=200))
        return
    path = Path(out)
    if path.suffix == ".npz":
        np.savez(path, **samples)
    elif path.suffix == ".npy":
        data = [k for k in samples]
        if len(data) != 1:
            from .runtime.errors import RuntimeUserError
            raise RuntimeUserError(f".npy holds one array but the model samples {len(data)} variables",
                                   hint="use .npz")
        np.save(path, samples[data[0]])
    elif path.suffix == ".png":
        from .runtime.plots import save_samples_png
        save_samples_png(samples, path)
    else:
        from .runtime.errors import RuntimeUserError
        raise RuntimeUserError(f"unknown output format '{path.suffix}'", hint="use .npz, .npy or .png")
    print(f"wrote {path}")


def cmd_eval(args) -> int:
    from .runtime.api import open_run

    run = open_run(args.run, device=args.device, data_dir=args.data_dir)
    metrics = run.evaluate(split=args.split, data=args.data, limit=args.limit or None, **_extra(args))
    (run.path / "eval.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
    print(f"model {run.model.name} ({run.model.method}) on {metrics.pop('split')}: "
          f"{metrics.pop('examples')} of {metrics.pop('of')} examples")
    post = metrics.pop("posterior", None)
    for key, value in metrics.items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) and math.isfinite(value) else f"  {key}: {value}")
    if post:
        _print_posterior(post)
    print(f"wrote {run.path / 'eval.json'}")
    return 0


def _extra(args) -> dict:
    return {"k": args.k} if args.k is not None else {}


def cmd_query(args) -> int:
    from .runtime.fitted import FittedRun

    target = _open(args)
    answer = target.query(args.query)
    if args.json:
        print(json.dumps(answer))
    else:
        for name, probs in answer.items():
            print(f"P({name} | evidence): " + ", ".join(f"{i}: {p:.4f}" for i, p in enumerate(probs)))
    return 0


def cmd_data(args) -> int:
    from .data import fetch_binarized_mnist

    if args.name != "binarized_mnist":
        from .runtime.errors import RuntimeUserError
        raise RuntimeUserError(f"nothing to fetch for '{args.name}'",
                               hint="only binarized_mnist is downloaded; toy sets are generated")
    for path in fetch_binarized_mnist(args.cache_dir):
        print(f"fetched {path}")
    return 0


def add_run_commands(sub, UserError) -> None:
    p = sub.add_parser("fit", help="train a model")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--model", metavar="NAME")
    p.add_argument("--data", metavar="NAME|PATH")
    p.add_argument("--data-dir", metavar="DIR")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", metavar="SCHEDULE",
                   help="constant | cosine(warmup = N, final = F) | step(at = F, factor = G); over the spec's")
    p.add_argument("--patience", type=int, metavar="P",
                   help="stop after P held-out checks without improvement, keeping the best weights; over the spec's")
    p.add_argument("--validate-every", type=int, metavar="N",
                   help="steps between held-out checks (default: once an epoch)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", metavar="RUN_DIR")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true",
                   help="no progress while training; errors and the final summary are still printed")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes (torch.distributed)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the training loss")
    p.add_argument("--metrics-every", type=int, metavar="N", help="steps between metrics records (default 50)")
    p.set_defaults(func=_guard(cmd_fit, UserError))

    p = sub.add_parser("sample", help="draw samples from a run or a spec")
    p.add_argument("target", metavar="RUN_DIR|SPEC")
    p.add_argument("--model", metavar="NAME")
    p.add_argument("-n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", metavar="NAME|PATH", help="covariates for a conditional model")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", metavar="FILE")
    p.set_defaults(func=_guard(cmd_sample, UserError))

    p = sub.add_parser("eval", help="evaluate a fitted run")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--split", choices=["valid", "train"], default="valid")
    p.add_argument("--data", metavar="PATH")
    p.add_argument("--limit", type=int, default=2000, help="examples to evaluate (0: all)")
    p.add_argument("--k", type=int, help="importance samples (latent-variable models)")
    p.add_argument("--data-dir", metavar="DIR", help="where binarized MNIST lives (default: as at fit)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_guard(cmd_eval, UserError))

    p = sub.add_parser("query", help="exact posterior marginals of discrete variables")
    p.add_argument("target", metavar="SPEC|RUN_DIR")
    p.add_argument("query", metavar='"a[, b] | e1 = v1, e2 = v2"')
    p.add_argument("--model", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_guard(cmd_query, UserError))

    p = sub.add_parser("data", help="data sets")
    p.add_argument("action", choices=["fetch"])
    p.add_argument("name", metavar="NAME")
    p.add_argument("--cache-dir", metavar="DIR")
    p.set_defaults(func=_guard(cmd_data, UserError))
