"""A cross-validated ensemble against a single network: test quality and what it costs.

For each seed, in one temporary copy of the project (default params otherwise), runs the real
pipeline up to the train stage (`dvc repro train`) with one network, then with ``train.folds: K``
and (``--ensemble-seeds M``) with ``train.ensemble_seeds: M`` (only the train stage re-runs), and
scores each ``models/base`` on the test split: macro F1, ROC AUC, log loss and ECE, the training
time (the run's ``train_seconds``, all members together; and the train stage's wall time), the
bundle's size and its serving latency (one thread, warm: median of single-row calls, and of calls
on the whole test split). The ensemble's own cross-validation estimate (``cv_f1_macro_mean``) is
reported beside its test score. Writes benchmarks/results/ensemble-<data>-<variants>.json.

    python benchmarks/ensemble.py [--dataset digits-lt] [--seeds 0 1 2 3 4] [--folds 5]
        [--ensemble-seeds 5] [--set key=value ...]

A cross-validated ensemble also trains on the validation rows; a seed ensemble (same rows as the
single network) shows what averaging alone brings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # scikit-learn's BLAS on 2 shared cores (MEASURED.md)

from conftest import make_project  # noqa: E402

SCORES = ("f1_macro", "roc_auc", "log_loss", "ece")


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def score_base(project, stage_seconds: float) -> dict:
    """Test scores, training time, size and latency of the project's models/base."""
    import pandas as pd
    import torch

    from sluice.evaluation.metrics import compute_metrics
    from sluice.model.bundle import load_bundle
    from sluice.model.preprocess import encode_labels

    torch.set_num_threads(1)
    bundle = project.path / "models/base"
    clf = load_bundle(bundle)
    test = pd.read_parquet(project.path / "data/processed/test.parquet")
    target = clf.spec["target"]
    rows = test.drop(columns=[target])
    found = compute_metrics(
        encode_labels(test[target], clf.classes, "test"), clf.predict_proba(rows), clf.classes
    )
    run = project.mlflow_client().get_run(clf.spec["lineage"]["run_id"])
    return {
        **{k: found[k] for k in SCORES},
        "cv_f1_macro": run.data.metrics.get("cv_f1_macro_mean"),
        "train_seconds": run.data.metrics["train_seconds"],
        "stage_seconds": stage_seconds,
        "bundle_mb": sum(f.stat().st_size for f in bundle.iterdir()) / 1e6,
        "latency_ms_1_row": 1e3 * median_seconds(lambda: clf.predict_proba(rows.head(1)), 50),
        f"latency_ms_{len(rows)}_rows": 1e3 * median_seconds(lambda: clf.predict_proba(rows), 10),
    }


def run_seeds(
    dataset: str, seeds: list[int], variants: dict[str, dict], overrides: list[str]
) -> list[dict]:
    import yaml

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj", fast=False)
        extra = {}
        for item in overrides:  # key.sub=value
            key, value = item.split("=", 1)
            *parents, leaf = key.split(".")
            node = extra
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = yaml.safe_load(value)
        for seed in seeds:
            row = {"seed": seed}
            project.set_params({"seed": seed, "data": {"name": dataset}, **extra})
            project.run("dvc", "repro", "resample")  # the stages before train, timed apart
            for name, train in variants.items():
                project.set_params({"train": train})
                started = time.perf_counter()
                project.run("dvc", "repro", "train")
                row[name] = score_base(project, time.perf_counter() - started)
                print(f"seed {seed} {name}: {json.dumps(row[name])}", flush=True)
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    out = {}
    for variant in (k for k in rows[0] if k != "seed"):
        keys = [k for k, v in rows[0][variant].items() if v is not None]
        out[variant] = {
            k: {
                "mean": statistics.mean(r[variant][k] for r in rows),
                "std": statistics.pstdev(r[variant][k] for r in rows),
            }
            for k in keys
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits-lt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--folds", type=int, default=5, help="0: no cross-validated ensemble")
    parser.add_argument(
        "--ensemble-seeds", type=int, default=0, help="> 0: also a seed ensemble (folds 1)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    variants = {"single": {"folds": 1, "ensemble_seeds": 1}}
    if args.folds:
        variants[f"folds_{args.folds}"] = {"folds": args.folds, "ensemble_seeds": 1}
    if args.ensemble_seeds:
        variants[f"seeds_{args.ensemble_seeds}"] = {
            "folds": 1,
            "ensemble_seeds": args.ensemble_seeds,
        }
    rows = run_seeds(args.dataset, args.seeds, variants, args.set)
    summary = summarise(rows)
    for variant, metrics in summary.items():
        print(
            f"{variant:>8}: "
            + ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in metrics.items())
        )
    out = ROOT / "benchmarks" / "results" / f"ensemble-{args.dataset}-{'-'.join(variants)}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"seeds": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
