"""Front-end speed: specs checked per second in one process (no torch), and the
whole `dgm check` process on every reference spec."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.harness import ROOT, machine, report  # noqa: E402

SPECS = sorted((ROOT.parent / "shared" / "specs").glob("*.dgm"))


def main() -> None:
    import dgmdsl

    texts = [(p.read_text(), str(p)) for p in SPECS]
    dgmdsl.loads(*texts[0])  # build the parser once, as a long-lived process would
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        for text, name in texts:
            dgmdsl.loads(text, name)
    per_second = rounds * len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dgmdsl", "check", *map(str, SPECS)], check=True,
                   stdout=subprocess.DEVNULL)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - start
    print(f"machine: {machine()}")
    print(f"specs checked per second (warm, in process): {per_second:.0f}")
    print(f"`dgm check` on all {len(SPECS)} reference specs: {whole:.2f} s wall "
          f"({whole - python:.2f} s after Python start)")
    report("front end", "all reference specs", "specs checked per second (in process)", round(per_second),
           "well under 1 s for all specs")
    report("front end", "all reference specs", "`dgm check` wall s after Python start", round(whole - python, 3),
           "< 1 s")


if __name__ == "__main__":
    main()
