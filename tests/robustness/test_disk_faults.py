"""A full disk, a file size limit and a read-only output folder, each real (a small tmpfs, the
RLIMIT_FSIZE the kernel enforces, a read-only mount or permissions): one line naming the path,
a non-zero exit, nothing half-written; the training stages refuse before any work.

Each runs one stage on a copy of a project whose clean, split and resample stages are done.
"""

from __future__ import annotations

import os
import resource
import subprocess

import pytest
from conftest import BIN

from .conftest import can_mount as _can_mount
from .conftest import (
    checkpoints,
    copy_project,
    error_line,
    file_snapshot,
    run_on_tmpfs,
    runs_by_status,
    temp_leftovers,
)

pytestmark = pytest.mark.slow

SPLITS = ["data/processed/train.parquet", "data/processed/val.parquet"]
SPLITS += ["data/processed/test.parquet", "reports/split.json"]


@pytest.fixture(scope="module")
def can_mount() -> bool:
    return _can_mount()


def _contents(project, rels: list[str]) -> dict[str, bytes]:
    return {rel: (project.path / rel).read_bytes() for rel in rels}


def test_a_full_disk_during_split_writes_nothing_and_names_the_file(prepared, tmp_path, can_mount):
    if not can_mount:
        pytest.skip("needs a mount namespace (unshare -rm) for a small tmpfs")
    project = copy_project(prepared, tmp_path / "proj")
    # 8 KiB: room for the stage's writability probe and one split, not for all of them.
    proc, left = run_on_tmpfs(project, "data/processed", "size=8k", "python", "-m", "stages.split")
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = error_line(proc)
    assert line.startswith("error: cannot write data/processed/val.parquet: No space left")
    assert "(ENOSPC); free space on that disk, then re-run" in line
    # train.parquet fitted, val.parquet did not: the splits move together, so neither is
    # there (never new splits beside old ones), and no temporary is left
    assert left == []


def test_a_file_size_limit_during_split_keeps_the_previous_outputs(prepared, tmp_path):
    project = copy_project(prepared, tmp_path / "proj")
    project.set_params({"split": {"test_size": 0.3}})  # new splits, if they could be written
    before = _contents(project, SPLITS)

    def limit_file_size() -> None:  # CPython ignores SIGXFSZ: an oversized write fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    proc = subprocess.run(
        [str(BIN / "python"), "-m", "stages.split"],
        cwd=project.path,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = error_line(proc)
    assert line.startswith("error: cannot write data/processed/")
    assert "File too large (EFBIG); raise the file size limit (ulimit -f)" in line
    assert _contents(project, SPLITS) == before and not temp_leftovers(project)


def test_a_read_only_model_folder_stops_train_before_any_work(prepared, tmp_path, can_mount):
    project = copy_project(prepared, tmp_path / "proj")
    before = file_snapshot(project.path)
    args = ("python", "-m", "stages.train")
    if can_mount:  # a read-only mount: refuses root too
        proc, left = run_on_tmpfs(project, "models", "ro,size=64k", *args)
        assert left == []
        assert "(EROFS); that file system is read-only" in error_line(proc)
    elif os.geteuid() != 0:  # permissions: refuse everyone but root
        (project.path / "models").chmod(0o555)
        try:
            proc = project.stage("train", check=False)
        finally:
            (project.path / "models").chmod(0o755)
        assert "(EACCES); make that folder writable by you" in error_line(proc)
    else:
        pytest.skip("root without a mount namespace: nothing here can refuse its writes")
    assert proc.returncode == 1
    assert error_line(proc).startswith("error: cannot write into models: ")
    assert "train base" not in proc.stderr  # refused before training started
    assert not checkpoints(project) and not runs_by_status(project)
    assert file_snapshot(project.path) == before


def test_an_output_folder_that_is_a_file_is_refused_before_training(prepared, tmp_path):
    project = copy_project(prepared, tmp_path / "proj")
    (project.path / "reports/train").mkdir(parents=True, exist_ok=True)
    for old in (project.path / "reports/train").iterdir():
        old.unlink()
    (project.path / "reports/train").rmdir()
    (project.path / "reports/train").write_text("not a folder\n")
    proc = project.stage("train", check=False)
    assert proc.returncode == 1
    line = error_line(proc)
    assert line == (
        "error: cannot write into reports/train: reports/train is not a folder; "
        "move it away, then re-run"
    )
    assert "train base" not in proc.stderr and not checkpoints(project)


def test_a_full_disk_under_the_sqlite_store_is_one_line_naming_it(prepared, tmp_path, can_mount):
    if not can_mount:
        pytest.skip("needs a mount namespace (unshare -rm) for a small tmpfs")
    project = copy_project(prepared, tmp_path / "proj")
    store = project.path / "store" / "mlflow.db"
    project.env = {**project.env, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    # 64 KiB: too small for MLflow's tables, so SQLite refuses as the store is created.
    proc, _ = run_on_tmpfs(project, "store", "size=64k", "python", "-m", "stages.train")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert error_line(proc) == (
        f"error: cannot write the MLflow store {store}: the disk is full (SQLITE_FULL); "
        "free space on that disk, then re-run the stage (a run it left RUNNING is then "
        "marked FAILED)"
    )
    assert not (project.path / "models" / "base").exists() and not checkpoints(project)
