"""Time and peak memory of each stage on a large, messy CSV (default: 300,000 rows).

Generates a CSV with 26 numeric and 4 categorical columns, missing values, duplicate rows, string
labels with stray whitespace/case, and a 5 % minority class; points a temporary copy of the
project at it; runs every stage as its own process under /usr/bin/time.

    python benchmarks/scale.py [--rows 300000] [--method smote] [--epochs 3]
        [--csv /tmp/big.csv] [--workdir DIR]

``--csv`` keeps the generated CSV (ten million rows: 5.4 GB, about 10 minutes to write) for the
next run; ``--workdir`` keeps the project. Train and finetune use both cores (``train.threads:
2``). Results go to benchmarks/results/scale-<rows>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_project  # noqa: E402

STAGES = ("clean", "split", "tune", "resample", "train", "finetune", "evaluate")


NUMERIC = 26
CATEGORIES = (
    ("plan", ["basic", "pro", "team"]),
    ("region", list("NESWC")),
    ("channel", ["web", "app", "store", "phone"]),
    ("device", ["ios", "android", "desktop"]),
)
CHUNK = 1_000_000


def messy_chunk(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Rows a user might bring: gaps, duplicates, categories, untidy labels, 5 % minority."""
    y = rng.random(rows) < 0.05
    frame = pd.DataFrame(
        {f"x{i}": rng.normal(size=rows) + y * (0.3 + 0.05 * (i % 20)) for i in range(NUMERIC)}
    )
    for name, cats in CATEGORIES:
        frame[name] = rng.choice(cats, size=rows)
    frame.loc[y & (rng.random(rows) < 0.5), "plan"] = "pro"
    for col in ("x0", "x5", "plan"):
        frame.loc[rng.random(rows) < 0.03, col] = None
    frame["label"] = np.where(y, rng.choice([" Churn", "churn ", "CHURN"], size=rows), "stay")
    return pd.concat([frame, frame.sample(rows // 100, random_state=int(rng.integers(2**31)))])


def messy_csv(path: Path, rows: int, seed: int = 0) -> None:
    """26 numeric + 4 categorical columns and a label, written a million rows at a time."""
    rng = np.random.default_rng(seed)
    for start in range(0, rows, CHUNK):
        chunk = messy_chunk(min(CHUNK, rows - start), rng)
        chunk.to_csv(path, index=False, mode="a" if start else "w", header=not start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--method", default="smote")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the project here (default: a temp dir)")
    parser.add_argument(
        "--csv", type=Path, help="the messy CSV: written there if missing, else read as it is"
    )
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.workdir is not None:
            tmp = str(args.workdir)
        project = make_project(Path(tmp) / "proj", fast=False)
        csv = (args.csv or project.path / "data" / "raw" / "big.csv").absolute()
        if not csv.exists():
            csv.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            messy_csv(csv, args.rows)
            print(f"wrote {csv.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.1f} s")
        project.set_params(
            {
                "data": {"path": str(csv), "target": "label"},
                "tune": {"trials": 0},  # a fixed model: this measures the pipeline's scaling
                "resample": {"method": args.method},
                # Both cores: one thread (the default) is fastest only for small tables.
                "train": {"model": "mlp", "epochs": args.epochs, "batch_size": 1024, "threads": 2},
                "finetune": {"epochs": 1, "freeze": ["features"]},
                "evaluate": {"bootstrap": 200},
            }
        )
        for stage in STAGES:
            proc = subprocess.run(
                ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", f"stages.{stage}"],
                cwd=project.path,
                env=project.env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{stage} failed:\n{proc.stderr[-3000:]}")
            seconds, kib = proc.stderr.strip().splitlines()[-1].split()
            results[stage] = {"seconds": float(seconds), "peak_rss_mb": int(kib) / 1024}
            print(
                f"{stage:>9}: {float(seconds):6.1f} s, peak RSS {int(kib) / 1024:6.0f} MB",
                flush=True,
            )
        clean = project.read_json("reports/clean.json")
        results["clean_report"] = {k: clean[k] for k in ("rows_in", "rows_out", "dropped", "fixed")}
        results["metrics"] = {
            r: {k: m[k] for k in ("f1_macro", "roc_auc")}
            for r, m in project.read_json("reports/metrics.json").items()
        }
    print(json.dumps(results["metrics"]))
    out = ROOT / "benchmarks" / "results" / f"scale-{args.rows}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
