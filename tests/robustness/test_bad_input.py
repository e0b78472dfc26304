"""Bad input through the real `dvc repro`: one `error:` line naming the file, column or value and
what to do; a non-zero exit; nothing written by the failing stage or after it; nothing
registered. Each case runs in a fresh project whose only data is the CSV it writes.

All cases run once, two at a time, in a module fixture (each is a few seconds of process start
and DVC); the tests then check what each left behind.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from conftest import Project, make_project

from .conftest import (
    CSV,
    TARGET,
    error_line,
    file_snapshot,
    messy_frame,
    model_versions,
    outputs_from,
    temp_leftovers,
    write_csv,
)

pytestmark = pytest.mark.slow


def _frame(**changes) -> pd.DataFrame:
    """The messy frame with a cell (``column=(row, value)``) or a whole column replaced
    (``column=value`` or ``column=function of the frame``)."""
    df = messy_frame(200, seed=1)
    for col, change in changes.items():
        if isinstance(change, tuple):
            df[col] = df[col].astype(object)
            df.loc[change[0], col] = change[1]
        else:
            df[col] = change(df) if callable(change) else change
    return df


def _rows(labels: dict[str, int], seed: int = 0) -> pd.DataFrame:
    """A small numeric table with exactly ``labels`` rows per class."""
    rng = np.random.default_rng(seed)
    y = [label for label, n in labels.items() for _ in range(n)]
    return pd.DataFrame({"x1": rng.normal(size=len(y)), "x2": rng.normal(size=len(y)), TARGET: y})


RAW_CASES = {
    "missing file": (None, [f"{CSV} not found", "set data.path"]),
    "empty file": (b"", [f"{CSV} is empty (0 bytes)", "header row"]),
    "header only": ("age,income,outcome\n", [f"{CSV} has a header but no data rows"]),
    "ragged long row": (
        "a,b,outcome\n1,2,x\n3,4,5,y\n",
        [f"{CSV}: line 3 has 4 fields, the header has 3", "fix the row"],
    ),
    "ragged short row": (
        "a,b,outcome\n1,2,x\n3,y\n5,6,x\n",
        [f"{CSV}: line 3 has 2 fields, the header has 3", "fix the row"],
    ),
    "not utf-8": (b"a,outcome\n1,caf\xe9\n", [f"{CSV} is not UTF-8 text", "0xe9"]),
}

TABLE_CASES = {
    "target column missing": (
        _frame(),
        {"data": {"target": "Outcome"}},
        ["target column 'Outcome' not found (did you mean 'outcome'?)", "set data.target"],
    ),
    "single class": (
        _frame(outcome=lambda df: np.where(np.arange(len(df)) % 3, "no", " No")),
        {},
        [CSV, "single class 'no' in column 'outcome'", "at least two"],
    ),
    "class below min_class_rows": (
        pd.concat([_rows({"a": 60, "b": 40}), _rows({"rare": 4}, seed=1)]),
        {},
        [
            CSV,
            "class 'rare' in column 'outcome' has 4 rows",
            "clean.min_class_rows=10",
            "clean.rare_classes: drop",
        ],
    ),
    "text in a numeric column": (
        _frame(age=(17, "forty")),
        {},
        [
            CSV,
            "column 'age' has non-numeric value 'forty' in data row 18",
            "clean.bad_values: missing",
        ],
    ),
    "infinity": (
        _frame(income=(5, np.inf)),
        {},
        [CSV, "column 'income' has infinite value 'inf' in data row 6"],
    ),
    "all-NaN column": (
        _frame(notes=np.nan),
        {},
        [CSV, "column 'notes' is empty (all values missing)", "data.drop_columns"],
    ),
    "declared column absent": (
        _frame(),
        {"data": {"columns": {"zip": "categorical", "zipcode": "categorical"}}},
        [CSV, "data.columns declares column 'zipcode'", "not in the data"],
    ),
}

PARAM_CASES = {
    "unknown key": ({"train": {"epoch": 3}}, ["params.yaml: unknown key 'train.epoch'"]),
    "unknown section": ({"trian": {"epochs": 3}}, ["params.yaml: unknown key 'trian'"]),
    "wrong type": ({"train": {"lr": "fast"}}, ["bad value 'fast' for 'train.lr'", "a number"]),
    "out of range": (
        {"split": {"test_size": 1.5}},
        ["bad value 1.5 for 'split.test_size'", "between 0.01 and 0.9"],
    ),
    "unknown choice": (
        {"resample": {"method": "smote2"}},
        ["bad value 'smote2' for 'resample.method'", "use one of"],
    ),
    "path without target": ({"data": {"target": None}}, ["'data.target'", "label column"]),
    # Values only a later stage used to trip over, after earlier stages had done their work:
    "negative seed": ({"seed": -1}, ["bad value -1 for 'seed'", "between 0 and"]),
    "unknown module to freeze": (
        {"finetune": {"freeze": ["body"]}},
        ["bad value 'body' for 'finetune.freeze'", "features or head"],
    ),
    "missing start model": (
        {"finetune": {"init_from": "models/bse"}},
        ["bad value 'models/bse' for 'finetune.init_from'", "models/base"],
    ),
    "malformed registry uri": (
        {"finetune": {"init_from": "models:/sluice"}},
        ["bad value 'models:/sluice' for 'finetune.init_from'", "models:/<name>@<alias>"],
    ),
    "floor above one": (
        {"promote": {"floors": {"roc_auc": 90}}},
        ["bad value 90.0 for 'promote.floors.roc_auc'", "between 0 and 1"],
    ),
}


@dataclass
class Case:
    """One project set-up: the CSV (a frame, raw text or bytes, or none) and params to merge."""

    csv: pd.DataFrame | str | bytes | None
    params: dict = field(default_factory=dict)
    command: tuple[str, ...] = ("dvc", "repro")


@dataclass
class Outcome:
    """What running a case left: the process result and the files before and after."""

    project: Project
    proc: object
    before: dict
    after: dict


def _small(rare_rows: int, **params) -> Case:
    """100 rows of classes a/b plus ``rare_rows`` of class 'rare'."""
    frame = pd.concat([_rows({"a": 60, "b": 40}), _rows({"rare": rare_rows}, seed=1)])
    return Case(frame, params)


REFUSED_AT_CLEAN = {
    **{f"file: {k}": (Case(csv), parts) for k, (csv, parts) in RAW_CASES.items()},
    **{f"table: {k}": (Case(f, p), parts) for k, (f, p, parts) in TABLE_CASES.items()},
    **{f"params: {k}": (Case(_frame(), p), parts) for k, (p, parts) in PARAM_CASES.items()},
}
LATER = {
    # Three rows of 'rare' and big val/test shares: stratification puts none of them in train.
    "unseen in train": _small(
        3, clean={"min_class_rows": 3}, split={"val_size": 0.45, "test_size": 0.45}
    ),
    # Three rows -> one in train: SMOTE has no neighbour to interpolate with.
    "too small for smote": _small(3, clean={"min_class_rows": 3}, resample={"method": "smote"}),
    "rare dropped": Case(
        _small(4).csv, {"clean": {"rare_classes": "drop"}}, ("dvc", "repro", "clean")
    ),
    "smote k lowered": Case(
        _small(5).csv,
        {"clean": {"min_class_rows": 3}, "resample": {"method": "smote"}},
        ("dvc", "repro", "resample"),
    ),
}


def _run_case(root, name: str, case: Case) -> Outcome:
    project = make_project(root / re.sub(r"\W+", "-", name))
    project.set_params({"data": {"path": CSV, "target": TARGET}})
    project.set_params(case.params)
    if case.csv is not None:
        write_csv(project, case.csv)
    before = file_snapshot(project.path)
    proc = project.run(*case.command, check=False)
    return Outcome(project, proc, before, file_snapshot(project.path))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """Every case of this module, run two at a time (one per core)."""
    root = tmp_path_factory.mktemp("bad-input")
    cases = {name: case for name, (case, _) in REFUSED_AT_CLEAN.items()} | LATER
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run_case, root, name, c) for name, c in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def _assert_message(outcome: Outcome, expected: list[str]) -> None:
    assert outcome.proc.returncode != 0
    line = error_line(outcome.proc)
    for part in expected:
        assert part in line, line


@pytest.mark.parametrize("case", list(REFUSED_AT_CLEAN))
def test_refused_in_the_first_stage_and_nothing_written(outcomes, case):
    outcome = outcomes[case]
    _assert_message(outcome, REFUSED_AT_CLEAN[case][1])
    assert "failed to reproduce 'clean'" in outcome.proc.stderr
    assert outcome.after == outcome.before  # no output, no dvc.lock, no temporary, no store
    assert not (outcome.project.path / "mlflow.db").exists()


def _assert_refused_at(outcome: Outcome, stage: str, expected: list[str]) -> None:
    """Failed in ``stage``: earlier stages' outputs exist, its own and later ones do not."""
    _assert_message(outcome, expected)
    assert f"failed to reproduce '{stage}'" in outcome.proc.stderr
    project = outcome.project
    left = [o for o in outputs_from(project, stage) if (project.path / o).exists()]
    assert not left, left
    assert (project.path / "reports/clean.json").exists()
    assert not temp_leftovers(project)
    assert not model_versions(project)


def test_class_that_cannot_reach_the_training_split_is_refused(outcomes):
    _assert_refused_at(
        outcomes["unseen in train"],
        "split",
        [
            "class 'rare' has no rows in the training split (val 2, test 1)",
            "split.val_size",
            "clean.rare_classes: drop",
        ],
    )


def test_class_too_small_for_smote_is_refused(outcomes):
    _assert_refused_at(
        outcomes["too small for smote"],
        "resample",
        [
            "resample.method smote needs at least 2 training rows per class",
            "class 'rare' has 1 in the training split",
            "random_over",
        ],
    )


def test_rare_class_drop_policy_is_applied_and_reported(outcomes):
    outcome = outcomes["rare dropped"]
    assert outcome.proc.returncode == 0, outcome.proc.stderr[-3000:]
    types = "column types (see reports/clean.json): 2 numeric (inferred): x1, x2"
    assert types in outcome.proc.stderr
    assert "dropped rare classes {'rare': 4}" in outcome.proc.stderr
    report = outcome.project.read_json("reports/clean.json")
    assert report["dropped_classes"] == ["rare"]
    assert report["dropped"]["rare_class"] == 4
    assert report["classes"] == {"a": 60, "b": 40}


def test_smote_neighbours_lowered_for_a_small_class_and_reported(outcomes):
    outcome = outcomes["smote k lowered"]
    assert outcome.proc.returncode == 0, outcome.proc.stderr[-3000:]
    info = outcome.project.read_json("reports/resample.json")
    split = outcome.project.read_json("reports/split.json")
    train_rare = split["class_counts"]["train"]["rare"]
    assert info["k_neighbors"] == train_rare - 1 < 5
    assert info["counts_after"]["rare"] == info["counts_after"]["a"]
    assert f"k_neighbors lowered from 5 to {train_rare - 1}" in outcome.proc.stderr
