"""Chain-rule models on binarized MNIST: quality (validation NLL next to the published
test NLL) and speed (marginal cost of a `dgm fit` step against a hand-written loop).

Usage:
  python benchmarks/autoregressive_mnist.py quality --model nade [--epochs E] [--device cuda] [--quick]
  python benchmarks/autoregressive_mnist.py speed --model nade,made,pixelcnn [--device cpu] [--quick]
Models: fvsbn, nade, made (1 mask), made32 (32 masks), made_wide (1 mask, 8000 units), pixelcnn;
`all` for every one.
Quality trains the reference spec for its own epochs (or --epochs) and evaluates the
whole validation split (the test split is not in the repository): expect it a little
above the published test figure. --quick trains a few hundred steps on 1000 examples.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import ROOT, dgm_fit_command, machine, marginal_step_costs, print_speed, report  # noqa: E402

__all__ = ["PUBLISHED", "quality", "speed", "nade_sampling_throughput", "main"]

REFERENCE = ROOT / "benchmarks" / "reference" / "autoregressive_ref.py"
SPECS = ROOT / "specs"
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"

# model -> (spec, published test NLL in nats, source)
PUBLISHED = {
    "fvsbn": ("fvsbn", 97.45, "Larochelle & Murray 2011"),
    "nade": ("nade", 88.86, "Larochelle & Murray 2011"),
    "made": ("made", 88.40, "Germain et al. 2015, 1 mask"),
    "made32": ("made", 86.64, "Germain et al. 2015, 32 masks"),
    # the paper's MNIST figures come from 8000-unit layers (its authors' published command
    # line); the reference spec keeps the 500 units, this variant widens it
    "made_wide": ("made", 88.40, "Germain et al. 2015, 1 mask, 8000 hidden units"),
    "pixelcnn": ("pixelcnn", 81.30, "van den Oord et al. 2016"),
}
# quality --quick: steps per model (300 where not listed); NADE and PixelCNN cost ~2-3 s a
# step on one CPU thread here, so their quick runs only show that the pipeline works
QUICK_STEPS = {"pixelcnn": 20, "nade": 20, "made_wide": 100}
SPEED_MODELS = ("nade", "made", "pixelcnn")
# steps per timed run (the marginal cost is the difference between 2N and N steps)
SPEED_STEPS = {"cpu": {"nade": 40, "made": 150, "pixelcnn": 10}, "cuda": {"nade": 400, "made": 1500, "pixelcnn": 300}}
QUICK_SPEED_STEPS = {"nade": 10, "made": 75, "pixelcnn": 4}


def spec_text(model: str) -> tuple[str, Path]:
    spec, _, _ = PUBLISHED[model]
    path = SPECS / f"{spec}.dgm"
    text = path.read_text()
    if model == "made32":
        text = text.replace("masks = 1", "masks = 32")
    if model == "made_wide":
        text = text.replace("hidden = [500]", "hidden = [8000]")
    return text, path


def quality(model: str, *, epochs: int | None, max_steps: int | None, limit: int | None, device: str,
            data_dir: str, patience: int | None = None, lr_schedule: str | None = None) -> dict:
    """Fit the reference spec, evaluate the validation split; print one line next to the paper."""
    import dgmdsl

    text, path = spec_text(model)
    spec_model = dgmdsl.loads(text, str(path)).models[0]
    start = time.perf_counter()
    run = spec_model.fit(epochs=epochs, max_steps=max_steps, device=device, data_dir=data_dir, quiet=True,
                         patience=patience, lr_schedule=lr_schedule,
                         out=tempfile.mkdtemp(prefix=f"dgm-bench-{model}-"))
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = run.evaluate(split="valid", limit=limit)
    eval_s = time.perf_counter() - start
    _, published, source = PUBLISHED[model]
    nll = metrics["nll_nats"]
    print(f"{model:9s} valid NLL {nll:7.2f} ± {metrics['nll_stderr']:.2f} nats ({metrics['examples']} examples; "
          f"{metrics['bits_per_dim']:.4f} bits/dim) | published test {published:.2f} ({source}) | "
          f"gap {nll - published:+.2f} | {run.fit_result['steps']} steps, {run.fit_result['epochs']} epochs, "
          f"fit {fit_s:.0f} s, eval {eval_s:.0f} s on {run.compiled.device}"
          + (f"; best valid NLL at step {run.fit_result['best_step']}" if patience else "")
          + (f"; lr schedule {lr_schedule}" if lr_schedule else ""), flush=True)
    report("chain rule", model, f"validation NLL (nats) vs published test {published} ({source})", round(nll, 2),
           f"within 1 nat of {published}", gap=round(nll - published, 2), epochs=run.fit_result["epochs"],
           fit_s=round(fit_s), device=str(run.compiled.device))
    return {"model": model, "nll": nll, "published": published, "fit_s": fit_s, "eval_s": eval_s}


def speed(model: str, *, device: str, data_dir: str, quick: bool, batch_size: int = 100, threads: int = 2):
    """Marginal step cost of the whole `dgm fit` process vs the hand-written script."""
    spec, _, _ = PUBLISHED[model]
    kind = "cuda" if device.startswith("cuda") else "cpu"
    steps = (QUICK_SPEED_STEPS if quick and kind == "cpu" else SPEED_STEPS[kind])[model]
    extra = ["--data-dir", data_dir, "--device", device]  # argparse keeps the last --device

    def dgm(n: int) -> list[str]:
        return dgm_fit_command(SPECS / f"{spec}.dgm", n, batch_size, extra)

    def reference(n: int) -> list[str]:
        return [sys.executable, str(REFERENCE), "--model", model, "--steps", str(n), "--batch-size",
                str(batch_size), "--device", device, "--data-dir", data_dir]

    result = marginal_step_costs(f"{model} ({device}, batch {batch_size}, {steps}/{2 * steps} steps)", dgm, reference,
                                 steps, repeats=2 if quick else 5, threads=threads)
    print_speed(result, family="chain rule")
    return result


def nade_sampling_throughput(device: str, images: int, naive_images: int) -> None:
    """Images per second from the NADE spec: incremental O(D*H) recurrence vs recomputation."""
    import torch

    import dgmdsl
    from benchmarks.nade_sampling import images_per_second

    text, path = spec_text("nade")
    compiled = dgmdsl.loads(text, str(path)).models[0].compile(device).eval()
    density = compiled.densities["x"]
    fast = images_per_second(lambda n: compiled.sample(n, seed=1)["x"], images)
    fast_small = images_per_second(lambda n: compiled.sample(n, seed=1)["x"], naive_images)
    generator = torch.Generator(device=compiled.device).manual_seed(1)
    slow = images_per_second(lambda n: density.conditioner.sample_naive(density.family, n, generator), naive_images)
    print(f"NADE sampling on {compiled.device}: incremental {fast:.1f} images/s (batch {images}), "
          f"{fast_small:.1f} images/s (batch {naive_images}); naive recomputation {slow:.1f} images/s "
          f"(batch {naive_images}); ratio at equal batch {fast_small / slow:.1f}x", flush=True)


def _models(text: str, allowed) -> list[str]:
    names = list(allowed) if text == "all" else text.split(",")
    unknown = [m for m in names if m not in allowed]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(allowed)} or all")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["quality", "speed", "both"], default="both")
    parser.add_argument("--model", default="all", help="comma-separated, or all")
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--epochs", type=int, default=None, help="quality: override the spec's epochs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--patience", type=int, help="quality: early stopping on the valid NLL (epochs)")
    parser.add_argument("--lr-schedule", help="quality: as `dgm fit --lr-schedule`")
    parser.add_argument("--data-dir", default=os.environ.get("DGM_DATA_DIR", str(DEFAULT_DATA_DIR)))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("DGM_DATA_DIR", args.data_dir)
    start = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    if args.what in ("quality", "both"):
        import torch
        torch.set_num_threads(args.threads)
        for model in _models(args.model, PUBLISHED):
            quality(model, epochs=args.epochs, max_steps=QUICK_STEPS.get(model, 300) if args.quick else None,
                    limit=1000 if args.quick else None, device=args.device, data_dir=args.data_dir,
                    patience=args.patience, lr_schedule=args.lr_schedule)
    if args.what in ("speed", "both"):
        for model in _models(args.model, SPEED_MODELS):
            speed(model, device=args.device, data_dir=args.data_dir, quick=args.quick, threads=args.threads)
        nade_sampling_throughput(args.device, images=100 if args.quick else 1000, naive_images=4)
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
