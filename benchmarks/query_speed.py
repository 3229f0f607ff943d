"""Exact query speed: variable elimination on a random 40-node binary network
(3 parents per node), against the 2^40 states brute force would need."""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import machine, report  # noqa: E402
from tests.runtime.test_fit_runs import random_network  # noqa: E402


def main() -> None:
    import dgmdsl

    model = dgmdsl.loads(random_network(40, 2))["Net40"]
    model.query("v5 | v39 = 1")  # warm up
    start = time.perf_counter()
    for _ in range(5):
        model.query("v5, v20 | v39 = 1, v30 = 0, v12 = 1")
    per_query = (time.perf_counter() - start) / 5
    print(f"machine: {machine()}")
    print(f"40-node network, 2 query variables, 3 evidence: {per_query:.3f} s per query (target: about 1 s)")
    report("bayes net", "random 40-node network", "exact query s", round(per_query, 4), "about 1 s")


if __name__ == "__main__":
    main()
