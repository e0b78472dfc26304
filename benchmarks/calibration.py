"""Calibration on the test split over seeds: the challenger's ECE, Brier, log loss and ROC AUC
before (temperature 1) and after temperature scaling, the way the floor is defined.

For each dataset and seed, runs the real pipeline (default params) as a DVC experiment in a
temporary copy of the project and reads reports/metrics.json and reports/registered.json. The
temperature is fitted on the validation split; the test split only measures. Writes
benchmarks/results/calibration-<dataset>.json.

ECE has sampling noise: on 114 test rows (breast-cancer) even exactly right probabilities
score about 0.03. Each seed therefore also reports ``ece_if_calibrated``: the mean ECE of
labels drawn from the model's own calibrated probabilities (per reliability bin: its row count
and mean confidence), i.e. what a perfectly calibrated model with these confidences would score.
The summary adds the ECE of all seeds' test rows pooled (five seeds of breast-cancer: 570 rows,
the same 15 bins), where that noise is about half as large, with its own ``if calibrated``,
and the test ECE of the pipeline's scikit-learn references (``evaluate.reference``: logistic
regression, histogram gradient boosting, fitted on the same training rows): what the usual
tools reach on the same splits.

    python benchmarks/calibration.py [--datasets digits-lt breast-cancer] [--seeds 0 1 2 3 4]

Floor: mean test ECE after calibration <= 0.02 on each dataset, and ROC AUC unchanged within
0.001 (a temperature keeps every row's ranking of a binary model, so its ROC AUC stays exactly;
the one-vs-rest AUC of a multi-class model can move slightly).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_project  # noqa: E402

SCORES = ("ece", "brier", "log_loss", "roc_auc")
ECE_FLOOR, AUC_TOLERANCE = 0.02, 0.001
DRAWS = 2000  # label draws behind ece_if_calibrated


def ece_if_calibrated(bins: list[dict], seed: int = 0) -> float:
    """Mean ECE over label draws from the probabilities themselves (the noise floor of ECE on
    these rows): each bin's correct count is Binomial(count, mean confidence)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    count = np.array([b["count"] for b in bins])
    conf = np.array([b["confidence"] for b in bins])
    correct = rng.binomial(count, conf, size=(DRAWS, len(bins)))
    return float((np.abs(correct - count * conf).sum(axis=1) / count.sum()).mean())


def run_seeds(dataset: str, seeds: list[int]) -> list[dict]:
    """One row per seed: the challenger's scores after and before temperature scaling."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp) / "proj", fast=False)
        for seed in seeds:
            project.run("dvc", "exp", "run", "-S", f"seed={seed}", "-S", f"data.name={dataset}")
            metrics = project.read_json("reports/metrics.json")
            role = project.read_json("reports/registered.json")["challenger"]["role"]
            m = metrics[role]
            bins = project.read_json(f"reports/plots/reliability_{role}.json")
            row = {
                "seed": seed,
                "challenger": role,
                "temperature": m["temperature"],
                "after": {k: m[k] for k in SCORES},
                "before": {k: m["uncalibrated"][k] for k in SCORES},
                "ece_if_calibrated": ece_if_calibrated(bins, seed),
                "bins": bins,
                "references": {
                    name: {k: scores[k] for k in SCORES}
                    for name, scores in metrics.items()
                    if name not in ("base", "finetuned")
                },
            }
            note = project.read_json(f"models/{role}/model.json")["calibration"].get("note")
            if note:  # why the temperature was left at 1
                row["note"] = note
            if "decision" in m:
                row["decision"] = m["decision"]
            rows.append(row)
            print(f"{dataset} seed {seed} ({role}, T = {m['temperature']:.3f}): " + _line(row))
    return rows


def _line(row: dict) -> str:
    scores = ", ".join(
        f"{k} {row['before'][k]:.4f} -> {row['after'][k]:.4f}"
        for k in ("ece", "log_loss", "roc_auc")
    )
    return f"{scores}; ece if calibrated {row['ece_if_calibrated']:.4f}"


def pooled_bins(rows: list[dict]) -> list[dict]:
    """The seeds' reliability bins added up: the bins of all their test rows together."""
    pooled: dict[float, dict] = {}
    for row in rows:
        for b in row["bins"]:
            p = pooled.setdefault(b["bin_low"], {"count": 0, "conf_sum": 0.0, "hits": 0.0})
            p["count"] += b["count"]
            p["conf_sum"] += b["confidence"] * b["count"]
            p["hits"] += b["accuracy"] * b["count"]
    return [
        {
            "count": p["count"],
            "confidence": p["conf_sum"] / p["count"],
            "accuracy": p["hits"] / p["count"],
        }
        for _, p in sorted(pooled.items())
    ]


def summarise(rows: list[dict]) -> dict:
    """Mean and standard deviation of each score before and after; the floor's verdict."""
    out = {
        when: {
            k: {
                "mean": statistics.mean(r[when][k] for r in rows),
                "std": statistics.pstdev(r[when][k] for r in rows),
            }
            for k in SCORES
        }
        for when in ("before", "after")
    }
    auc_change = max(abs(r["after"]["roc_auc"] - r["before"]["roc_auc"]) for r in rows)
    out["temperature_mean"] = statistics.mean(r["temperature"] for r in rows)
    out["ece_if_calibrated_mean"] = statistics.mean(r["ece_if_calibrated"] for r in rows)
    out["max_abs_roc_auc_change"] = auc_change
    bins = pooled_bins(rows)
    rows_in_all = sum(b["count"] for b in bins)
    out["pooled"] = {
        "rows": rows_in_all,
        "ece": sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / rows_in_all,
        "ece_if_calibrated": ece_if_calibrated(bins),
    }
    out["references"] = {
        name: {k: statistics.mean(r["references"][name][k] for r in rows) for k in SCORES}
        for name in rows[0]["references"]
    }
    out["floor_met"] = out["after"]["ece"]["mean"] <= ECE_FLOOR and auc_change <= AUC_TOLERANCE
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits-lt", "breast-cancer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    results = {}
    for dataset in args.datasets:
        rows = run_seeds(dataset, args.seeds)
        results[dataset] = {"seeds": rows, "summary": summarise(rows)}
        out = ROOT / "benchmarks" / "results" / f"calibration-{dataset}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results[dataset], indent=2) + "\n")
    for dataset, result in results.items():
        s = result["summary"]
        for when in ("before", "after"):
            print(
                f"{dataset:>14} {when:>6}: "
                + ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in s[when].items())
            )
        print(
            f"{dataset:>14}: mean temperature {s['temperature_mean']:.3f}, ECE if calibrated "
            f"{s['ece_if_calibrated_mean']:.4f}, largest ROC AUC change "
            f"{s['max_abs_roc_auc_change']:.5f}, floor met: {s['floor_met']}"
        )
        pooled = s["pooled"]
        print(
            f"{dataset:>14}: all seeds' {pooled['rows']} test rows pooled: ECE {pooled['ece']:.4f} "
            f"(if calibrated {pooled['ece_if_calibrated']:.4f})"
        )
        for name, ref in s["references"].items():
            print(
                f"{dataset:>14}: reference {name}: test ECE {ref['ece']:.4f}, "
                f"ROC AUC {ref['roc_auc']:.4f} (mean over seeds)"
            )


if __name__ == "__main__":
    main()
