"""Test-split quality over seeds, the way the floors are defined: `dvc exp run -S seed=N`.

For each seed, runs the real pipeline as a DVC experiment in a temporary copy of the project
(default params unless --dataset says otherwise) and reads reports/metrics.json. Reports each
model's mean and standard deviation, and the model the pipeline itself marks `challenger` (the
better sluice model on validation: ROC AUC, then macro F1, then log loss), with the validation
scores behind that choice. Writes benchmarks/results/quality-<data>.json, or
quality-<data>-<variant>.json for a run with --set.

    python benchmarks/quality.py [--dataset digits-lt] [--seeds 0 1 2 3 4] [--set key=value ...]

``--set`` passes more params to every experiment (``dvc exp run -S``), to compare a variant
over the same seeds, e.g. ``--set train.epochs=30 --set train.patience=8``. Choose between
variants on the validation scores: choosing on test scores would make them optimistic.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_project  # noqa: E402

METRICS = ("f1_macro", "roc_auc", "balanced_accuracy", "accuracy")


def run_seeds(dataset: str, seeds: list[int], overrides: list[str]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj", fast=False)
        for seed in seeds:
            sets = [f"seed={seed}", f"data.name={dataset}", *overrides]
            project.run("dvc", "exp", "run", *(arg for s in sets for arg in ("-S", s)))
            metrics = project.read_json("reports/metrics.json")
            selection = project.read_json("reports/registered.json")["challenger"]
            best = selection["role"]
            rows.append(
                {
                    "seed": seed,
                    "challenger": best,
                    **{role: {k: metrics[role][k] for k in METRICS} for role in metrics},
                    "val": selection["val_scores"],
                }
            )
            print(
                f"seed {seed}: "
                + ", ".join(
                    f"{role} f1 {metrics[role]['f1_macro']:.4f} auc {metrics[role]['roc_auc']:.5f}"
                    for role in metrics
                )
                + f" -> challenger {best}",
                flush=True,
            )
    return rows


def summarise(rows: list[dict]) -> dict:
    out = {}
    for role in ("base", "finetuned", "logreg", "hgb", "challenger"):
        picked = [r[r["challenger"]] if role == "challenger" else r.get(role) for r in rows]
        if any(p is None for p in picked):
            continue
        out[role] = {
            k: {
                "mean": statistics.mean(p[k] for p in picked),
                "std": statistics.pstdev(p[k] for p in picked),
            }
            for k in METRICS
        }
    return out


def validation_means(rows: list[dict]) -> dict:
    """Mean validation scores per sluice model: what the challenger is chosen on."""
    return {
        role: {k: statistics.mean(r["val"][role][k] for r in rows) for k in scores}
        for role, scores in rows[0]["val"].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits-lt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    rows = run_seeds(args.dataset, args.seeds, args.set)
    summary = summarise(rows)
    for role, m in summary.items():
        print(
            f"{role:>14}: "
            + ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in m.items())
        )
    summary["val"] = validation_means(rows)
    for role, scores in summary["val"].items():
        print(f"{'val ' + role:>14}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    variant = "".join(f"-{re.sub(r'[^A-Za-z0-9.]+', '_', s)}" for s in args.set)
    out = ROOT / "benchmarks" / "results" / f"quality-{args.dataset}{variant}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"seeds": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
