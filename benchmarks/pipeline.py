"""Wall time of `dvc repro` on the default pipeline, of a no-op `dvc repro`, and the wall and
CPU time of the `sluice` commands a user runs next (status, promote, predict).

Each repetition copies the project into a fresh temporary git + DVC repository with an empty
MLflow store (what a fresh clone sees after `make setup`), runs `dvc repro`, then `dvc repro`
again (nothing to do), then `sluice status`, `sluice promote` and `sluice predict` on 20 test
rows. Prints medians and writes benchmarks/results/pipeline.json.

    python benchmarks/pipeline.py [--runs 3] [--noop-runs 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_project  # noqa: E402  (the tests' project copier)


def timed(project, *cmd: str) -> float:
    return cpu_timed(project, *cmd)[0]


def cpu_timed(project, *cmd: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the command and its children) of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    project.run(*cmd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_commands(project, into: dict[str, list]) -> None:
    """``sluice status``, ``promote`` and ``predict`` (20 test rows) once each, into ``into``."""
    import pandas as pd

    rows = pd.read_parquet(project.path / "data/processed/test.parquet").head(20)
    rows.drop(columns=["target"]).to_csv(project.path / "rows.csv", index=False)
    commands = {
        "status": ("sluice", "status"),
        "promote": ("sluice", "promote", "--force", "--reason", "benchmark"),
        "predict": ("sluice", "predict", "rows.csv", "-o", "preds.csv"),
    }
    for name, cmd in commands.items():
        into.setdefault(name, []).append(cpu_timed(project, *cmd))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--noop-runs", type=int, default=5)
    args = parser.parse_args()
    full, noop, commands = [], [], {}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(Path(tmp) / "proj", fast=False)
            full.append(timed(project, "dvc", "repro"))
            noop += [timed(project, "dvc", "repro") for _ in range(args.noop_runs)]
            time_commands(project, commands)
        print(f"run {i + 1}: dvc repro {full[-1]:.1f} s", flush=True)
    result = {
        "dvc_repro_s": {"median": statistics.median(full), "all": full},
        "noop_repro_s": {"median": statistics.median(noop), "all": noop},
    }
    for name, times in commands.items():
        result[f"sluice_{name}"] = {
            "wall_s_median": statistics.median(w for w, _ in times),
            "cpu_s_median": statistics.median(c for _, c in times),
            "all": times,
        }
    out = ROOT / "benchmarks" / "results" / "pipeline.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"dvc repro (default params): median {result['dvc_repro_s']['median']:.1f} s "
        f"over {len(full)} runs"
    )
    print(f"no-op dvc repro: median {result['noop_repro_s']['median']:.2f} s over {len(noop)} runs")
    for name in commands:
        one = result[f"sluice_{name}"]
        print(
            f"sluice {name}: median {one['wall_s_median']:.2f} s wall, "
            f"{one['cpu_s_median']:.2f} s CPU over {len(commands[name])} runs"
        )


if __name__ == "__main__":
    main()
