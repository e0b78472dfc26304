"""Atomic writes: an output is the old version or the new one, never half of one, and a write
cut short (an error or Ctrl-C) leaves no temporary behind."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from sluice.atomic import atomic_dir, atomic_path, outputs_together
from sluice.errors import SluiceError
from sluice.io import read_table, write_json, write_table
from sluice.model.bundle import is_bundle


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
    with atomic_dir(target, owned=is_bundle) as tmp:
        tmp.mkdir()
        (tmp / "model.json").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target, owned=is_bundle) as tmp:
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


def test_file_write_never_replaces_a_directory(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "raw.csv").write_text("precious\n")
    refused = pytest.raises(SluiceError, match=r"results is a directory; refusing")
    with refused, atomic_path(folder) as tmp:
        tmp.write_text("predicted\n1\n")
    assert (folder / "raw.csv").read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_file_write_refuses_a_directory_made_while_writing(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(SluiceError, match="is a directory"), atomic_path(target) as tmp:
        tmp.write_text("a\n")
        target.mkdir()
        (target / "keep.txt").write_text("keep")
    assert (target / "keep.txt").read_text() == "keep"


def test_directory_write_never_replaces_a_folder_it_did_not_write(tmp_path):
    folder = tmp_path / "models" / "base"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    foreign = "not an output sluice wrote"
    with pytest.raises(SluiceError, match=foreign), atomic_dir(folder, owned=is_bundle) as tmp:
        tmp.mkdir()
        (tmp / "model.json").write_text("{}")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    plain = tmp_path / "models" / "finetuned"
    plain.write_text("a file")
    with pytest.raises(SluiceError, match=foreign), atomic_dir(plain, owned=is_bundle) as tmp:
        tmp.mkdir()
    assert plain.read_text() == "a file"


def test_directory_replacement_is_never_missing(tmp_path):
    """A reader polling the bundle folder sees the old or the new one at every moment."""
    target = tmp_path / "base"
    seen_missing, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not (target / "model.json").exists():
                seen_missing.append(True)

    def write(version: int) -> None:
        with atomic_dir(target, owned=is_bundle) as tmp:
            tmp.mkdir()
            (tmp / "model.json").write_text(str(version))

    write(0)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for version in range(1, 300):
            write(version)
    finally:
        stop.set()
        watcher.join()
    assert not seen_missing
    assert (target / "model.json").read_text() == "299"
    assert [p.name for p in tmp_path.iterdir()] == ["base"]


def test_writes_are_flushed_before_the_rename(tmp_path, monkeypatch):
    flushed: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def record_replace(src, dst) -> None:
        flushed.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert flushed[-2:] == ["replace metrics.json", str(tmp_path)]
    assert flushed[0].endswith("/metrics.json") and flushed[0] != str(tmp_path / "metrics.json")


def _several_outputs(folder: Path, version: int, fail_after: int | None = None) -> None:
    """A stage's outputs written together: two tables, a bundle folder and a report."""
    with outputs_together():
        write_table(folder / "train.parquet", pd.DataFrame({"v": [version]}))
        write_table(folder / "val.parquet", pd.DataFrame({"v": [version]}))
        if fail_after == 2:
            raise OSError(28, "No space left on device")
        with atomic_dir(folder / "base", owned=is_bundle) as tmp:
            tmp.mkdir()
            (tmp / "model.json").write_text(str(version))
        if fail_after == 3:
            raise KeyboardInterrupt
        write_json(folder / "report.json", {"v": version})


def _versions(folder: Path) -> dict[str, object]:
    return {
        "train": read_table(folder / "train.parquet")["v"].tolist(),
        "val": read_table(folder / "val.parquet")["v"].tolist(),
        "base": (folder / "base" / "model.json").read_text(),
        "report": json.loads((folder / "report.json").read_text()),
    }


@pytest.mark.parametrize("fail_after", [2, 3])
def test_outputs_written_together_are_all_new_or_all_old(tmp_path, fail_after):
    _several_outputs(tmp_path, 1)
    old = _versions(tmp_path)
    assert old == {"train": [1], "val": [1], "base": "1", "report": {"v": 1}}
    with pytest.raises((OSError, KeyboardInterrupt)):
        _several_outputs(tmp_path, 2, fail_after)
    assert _versions(tmp_path) == old  # not new splits beside old ones
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["base", "report.json", "train.parquet", "val.parquet"]  # no temporary
    _several_outputs(tmp_path, 3)
    assert _versions(tmp_path) == {"train": [3], "val": [3], "base": "3", "report": {"v": 3}}
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_outputs_together_refuse_a_directory_made_meanwhile_and_move_nothing(tmp_path):
    with pytest.raises(SluiceError, match="report.json is a directory"), outputs_together():
        write_json(tmp_path / "metrics.json", {"a": 1})
        write_json(tmp_path / "report.json", {"b": 2})
        (tmp_path / "report.json").mkdir()  # by someone else, before the outputs move
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    assert not any((tmp_path / "report.json").iterdir())


def test_outputs_together_move_nothing_until_the_block_ends(tmp_path):
    with outputs_together():
        write_json(tmp_path / "metrics.json", {"a": 1})
        assert not (tmp_path / "metrics.json").exists()
        with outputs_together():  # nested: the outer block moves them
            write_json(tmp_path / "report.json", {"b": 2})
        assert not (tmp_path / "report.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "report.json"]
