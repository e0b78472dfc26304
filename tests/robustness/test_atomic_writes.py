"""Atomic writes: an output is the old version or the new one, never half of one, and a write
cut short (an error or Ctrl-C) leaves no temporary behind."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sluice.io import atomic_path, read_table, write_json, write_table


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_interrupted_file_write_keeps_the_previous_file(tmp_path, interruption):
    target = tmp_path / "reports" / "metrics.json"
    write_json(target, {"version": 1})
    with pytest.raises(interruption), atomic_path(target) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise interruption()
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_interrupted_directory_write_keeps_the_previous_bundle(tmp_path):
    target = tmp_path / "models" / "base"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "model.json").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "model.json").write_text("new")
        raise KeyboardInterrupt
    assert (target / "model.json").read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["base"]


def test_completed_write_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "data" / "train.parquet"
    write_table(target, pd.DataFrame({"a": [1, 2]}))
    write_table(target, pd.DataFrame({"a": [3]}))
    assert read_table(target)["a"].tolist() == [3]
    assert [p.name for p in target.parent.iterdir()] == ["train.parquet"]
