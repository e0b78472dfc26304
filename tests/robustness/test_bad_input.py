"""Bad input through the real `dvc repro`: one `error:` line naming the file, column or value and
what to do; a non-zero exit; nothing written by the failing stage or after it; nothing
registered. Each case starts from a fresh project whose only data is the CSV it writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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
    "wrong type int": ({"seed": 1.5}, ["bad value 1.5 for 'seed'", "an integer"]),
    "out of range": (
        {"split": {"test_size": 1.5}},
        ["bad value 1.5 for 'split.test_size'", "between 0.01 and 0.9"],
    ),
    "unknown choice": (
        {"resample": {"method": "smote2"}},
        ["bad value 'smote2' for 'resample.method'", "use one of"],
    ),
    "path without target": ({"data": {"target": None}}, ["'data.target'", "label column"]),
}


def _assert_refused_at_clean(project, expected: list[str]) -> None:
    """`dvc repro` fails in the first stage and leaves the project exactly as it was."""
    before = file_snapshot(project.path)
    proc = project.run("dvc", "repro", check=False)
    assert proc.returncode != 0
    line = error_line(proc)
    for part in expected:
        assert part in line, line
    assert file_snapshot(project.path) == before  # no output, no lock file, no store
    assert not (project.path / "mlflow.db").exists()


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_broken_file_is_refused_before_anything_is_written(project, case):
    content, expected = RAW_CASES[case]
    project.set_params({"data": {"path": CSV, "target": TARGET}})
    if content is not None:
        write_csv(project, content)
    _assert_refused_at_clean(project, expected)


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_bad_table_is_refused_naming_column_and_value(project, case):
    frame, params, expected = TABLE_CASES[case]
    project.set_params({"data": {"path": CSV, "target": TARGET}})
    project.set_params(params)
    write_csv(project, frame)
    _assert_refused_at_clean(project, expected)


@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_bad_params_are_refused_before_any_stage_works(project, case):
    overrides, expected = PARAM_CASES[case]
    project.set_params({"data": {"path": CSV, "target": TARGET}})
    write_csv(project, _frame())
    project.set_params(overrides)
    _assert_refused_at_clean(project, expected)


def _assert_refused_at(project, stage: str, expected: list[str]) -> None:
    """`dvc repro` fails in ``stage``: earlier stages' outputs exist, its own and later do not."""
    proc = project.run("dvc", "repro", check=False)
    assert proc.returncode != 0
    assert f"failed to reproduce '{stage}'" in proc.stderr
    line = error_line(proc)
    for part in expected:
        assert part in line, line
    left = [o for o in outputs_from(project, stage) if (project.path / o).exists()]
    assert not left, left
    assert (project.path / "reports/clean.json").exists()
    assert not temp_leftovers(project)
    assert not model_versions(project)


def test_class_that_cannot_reach_the_training_split_is_refused(project):
    # Three rows of 'rare' and big val/test shares: stratification puts none of them in train.
    project.set_params(
        {
            "data": {"path": CSV, "target": TARGET},
            "clean": {"min_class_rows": 3},
            "split": {"val_size": 0.45, "test_size": 0.45},
        }
    )
    write_csv(project, pd.concat([_rows({"a": 60, "b": 40}), _rows({"rare": 3}, seed=1)]))
    _assert_refused_at(
        project,
        "split",
        [
            "class 'rare' has no rows in the training split (val 2, test 1)",
            "split.val_size",
            "clean.rare_classes: drop",
        ],
    )


def test_class_too_small_for_smote_is_refused(project):
    # 3 rows -> 1 in train: SMOTE has no neighbour to interpolate with.
    project.set_params(
        {
            "data": {"path": CSV, "target": TARGET},
            "clean": {"min_class_rows": 3},
            "resample": {"method": "smote"},
        }
    )
    write_csv(project, pd.concat([_rows({"a": 60, "b": 40}), _rows({"rare": 3}, seed=1)]))
    _assert_refused_at(
        project,
        "resample",
        [
            "resample.method smote needs at least 2 training rows per class",
            "class 'rare' has 1 in the training split",
            "random_over",
        ],
    )


def test_rare_class_drop_policy_is_applied_and_reported(project):
    project.set_params({"data": {"path": CSV, "target": TARGET}, "clean": {"rare_classes": "drop"}})
    write_csv(project, pd.concat([_rows({"a": 60, "b": 40}), _rows({"rare": 4}, seed=1)]))
    project.run("dvc", "repro", "clean")
    report = project.read_json("reports/clean.json")
    assert report["dropped_classes"] == ["rare"]
    assert report["dropped"]["rare_class"] == 4
    assert report["classes"] == {"a": 60, "b": 40}


def test_smote_neighbours_lowered_for_a_small_class_and_reported(project):
    project.set_params(
        {
            "data": {"path": CSV, "target": TARGET},
            "clean": {"min_class_rows": 3},
            "resample": {"method": "smote"},
        }
    )
    write_csv(project, pd.concat([_rows({"a": 60, "b": 40}), _rows({"rare": 5}, seed=1)]))
    proc = project.run("dvc", "repro", "resample")
    info = project.read_json("reports/resample.json")
    train_rare = project.read_json("reports/split.json")["class_counts"]["train"]["rare"]
    assert info["k_neighbors"] == train_rare - 1 < 5
    assert info["counts_after"]["rare"] == info["counts_after"]["a"]
    assert f"k_neighbors lowered from 5 to {train_rare - 1}" in proc.stderr
