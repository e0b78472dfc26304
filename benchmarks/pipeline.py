"""Wall time of `dvc repro` on the default pipeline, and of a no-op `dvc repro`.

Each repetition copies the project into a fresh temporary git + DVC repository with an empty
MLflow store (what a fresh clone sees after `make setup`), runs `dvc repro`, then `dvc repro`
again (nothing to do). Prints medians and writes benchmarks/results/pipeline.json.

    python benchmarks/pipeline.py [--runs 3] [--noop-runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_project  # noqa: E402  (the tests' project copier)


def timed(project, *cmd: str) -> float:
    start = time.perf_counter()
    project.run(*cmd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--noop-runs", type=int, default=5)
    args = parser.parse_args()
    full, noop = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(Path(tmp) / "proj", fast=False)
            full.append(timed(project, "dvc", "repro"))
            noop += [timed(project, "dvc", "repro") for _ in range(args.noop_runs)]
        print(f"run {i + 1}: dvc repro {full[-1]:.1f} s", flush=True)
    result = {
        "dvc_repro_s": {"median": statistics.median(full), "all": full},
        "noop_repro_s": {"median": statistics.median(noop), "all": noop},
    }
    out = ROOT / "benchmarks" / "results" / "pipeline.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"dvc repro (default params): median {result['dvc_repro_s']['median']:.1f} s "
        f"over {len(full)} runs"
    )
    print(f"no-op dvc repro: median {result['noop_repro_s']['median']:.2f} s over {len(noop)} runs")


if __name__ == "__main__":
    main()
