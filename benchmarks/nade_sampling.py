"""NADE sampling throughput: incremental O(D*H) recurrence vs. naive O(D^2*H) recomputation.

Usage: python benchmarks/nade_sampling.py [--incremental-images N] [--naive-images M]
Model: 784 binary pixels, 500 sigmoid hidden units, random weights (as in nade.dgm).
At small batches the incremental sampler is bound by per-step Python overhead,
so the equal-batch ratio understates its O(D) algorithmic advantage.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.harness import report  # noqa: E402
from dgmdsl.nn.autoregressive import build_autoregressive  # noqa: E402

__all__ = ["images_per_second", "main"]


def images_per_second(draw: Callable[[int], torch.Tensor], images: int, repeats: int = 3) -> float:
    """Best throughput over ``repeats`` timed calls, after a small warm-up call."""
    draw(1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        draw(images)
        best = min(best, time.perf_counter() - start)
    return images / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incremental-images", type=int, default=100)
    parser.add_argument("--naive-images", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = build_autoregressive("Bernoulli", None, "NADE", {"hidden": 500}, (784,)).eval()
    nade, family = model.conditioner, model.family

    def incremental(n: int) -> torch.Tensor:
        return nade.sample(family, n, generator=torch.Generator().manual_seed(1))

    def naive(n: int) -> torch.Tensor:
        return nade.sample_naive(family, n, generator=torch.Generator().manual_seed(1))

    fast = images_per_second(incremental, args.incremental_images)
    # The ratio compares equal batch sizes, so batching cannot flatter either side.
    fast_same_batch = images_per_second(incremental, args.naive_images)
    slow = images_per_second(naive, args.naive_images)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"NADE 784 x 500, incremental: {fast:10.1f} images/s (batch {args.incremental_images})")
    print(f"NADE 784 x 500, incremental: {fast_same_batch:10.1f} images/s (batch {args.naive_images})")
    print(f"NADE 784 x 500, naive:       {slow:10.1f} images/s (batch {args.naive_images})")
    print(f"throughput ratio, incremental (batch {args.incremental_images}) / naive "
          f"(batch {args.naive_images}): {fast / slow:.1f}x")
    print(f"throughput ratio at equal batch {args.naive_images}: {fast_same_batch / slow:.1f}x")
    report("chain rule", "nade", f"sampling images/s, incremental (batch {args.incremental_images})",
           round(fast, 1), f"far above naive recomputation ({slow:.2f} images/s at batch {args.naive_images})",
           ratio_equal_batch=round(fast_same_batch / slow, 1))

if __name__ == "__main__":
    main()
