"""Faults during the real pipeline: Ctrl-C, kill -9 and SIGTERM in the middle of training, and a
tracking server that is down. Each starts from a copy of a project whose clean, split and
resample stages are done, with training long enough (80 quick epochs) to be hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket

import pytest
import torch
from safetensors.torch import load_file

from .conftest import (
    LONG_TRAIN,
    checkpoints,
    copy_project,
    error_line,
    model_versions,
    outputs_from,
    runs_by_status,
    signal_state,
    start,
    temp_leftovers,
    wait_for,
)

pytestmark = pytest.mark.slow


def _long_training(prepared, dest):
    project = copy_project(prepared, dest)
    project.set_params(LONG_TRAIN)
    return project


def _outputs_left(project) -> list[str]:
    """Temporaries of atomic output writes left behind. A checkpoint write cut short may leave
    its temporary; the next training run removes it (checked after each re-run)."""
    return [p for p in temp_leftovers(project) if not p.startswith(".sluice")]


def _weights(project, role: str = "base") -> dict[str, torch.Tensor]:
    return load_file(project.path / f"models/{role}/model.safetensors")


def _interrupt_after_checkpoint(project, sig: int) -> tuple[int, str]:
    """Start `dvc repro`, send ``sig`` to its process group (dvc and the stage, as a terminal
    does) once training has saved a checkpoint; return the exit code and stderr."""
    import psutil

    proc = start(project, "dvc", "repro")
    wait_for(lambda: bool(checkpoints(project)), proc)
    group = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    states = []
    for pid in group:
        with contextlib.suppress(FileNotFoundError):
            states.append(f"{pid}: {signal_state(pid)}")
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err + "\nsignal state at the signal: " + "; ".join(states)


def _epochs_logged(project, role: str = "base") -> int:
    """How many epochs of validation F1 the finished run of ``role`` holds."""
    client = project.mlflow_client()
    experiment = client.get_experiment_by_name("sluice")
    query = f"attributes.status = 'FINISHED' and tags.`sluice.role` = '{role}'"
    (run,) = client.search_runs([experiment.experiment_id], query)
    return len(client.get_metric_history(run.info.run_id, "val_f1_macro"))


def test_ctrl_c_in_train_fails_the_run_and_the_next_repro_resumes(prepared, tmp_path):
    project = _long_training(prepared, tmp_path / "interrupted")
    reference = _long_training(prepared, tmp_path / "reference")
    uninterrupted = start(reference, "dvc", "repro", "train")

    code, err = _interrupt_after_checkpoint(project, signal.SIGINT)
    assert code != 0 and "interrupted" in err, err[-3000:]
    assert not (project.path / "models/base").exists()
    assert runs_by_status(project) == {"FAILED": ["base"]}
    assert not model_versions(project)
    assert len(checkpoints(project)) == 1 and not _outputs_left(project)

    resumed = project.run("dvc", "repro", "train")  # no manual cleanup of DVC or MLflow state
    assert "resuming from checkpoint at epoch" in resumed.stderr
    assert not checkpoints(project) and not temp_leftovers(project)
    statuses = runs_by_status(project)
    assert statuses == {"FAILED": ["base"], "FINISHED": ["base"]}

    _, ref_err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, ref_err[-3000:]
    ours, theirs = _weights(project), _weights(reference)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # resuming changes nothing
    history = (project.path / "reports/train/base.csv").read_text()
    assert history == (reference.path / "reports/train/base.csv").read_text()
    assert _epochs_logged(project) == LONG_TRAIN["train"]["epochs"]  # restored epochs included


def test_kill_9_in_train_then_plain_repro_completes(prepared, tmp_path):
    project = _long_training(prepared, tmp_path / "killed")
    code, _ = _interrupt_after_checkpoint(project, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert runs_by_status(project) == {"RUNNING": ["base"]}  # what a kill leaves behind
    # A torn checkpoint (a write cut short) must be ignored, never loaded.
    (ckpt,) = checkpoints(project)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])

    done = project.run("dvc", "repro")  # no removal of .dvc/tmp locks or runs by hand
    assert "ignoring unreadable checkpoint" in done.stderr
    assert "resuming" not in done.stderr
    statuses = runs_by_status(project)
    assert sorted(statuses.get("FAILED", [])) == ["base"]  # the killed run, marked as such
    assert sorted(statuses["FINISHED"]) == ["base", "finetuned", "logreg"]
    assert "RUNNING" not in statuses
    assert len(model_versions(project)) == 2
    assert not checkpoints(project) and not temp_leftovers(project)
    assert project.run("dvc", "status").stdout.strip() in ("", "Data and pipelines are up to date.")


def test_sigterm_in_train_ends_the_run_as_failed(prepared, tmp_path):
    project = _long_training(prepared, tmp_path / "terminated")
    proc = start(project, "python", "-m", "stages.train")
    wait_for(lambda: bool(checkpoints(project)), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "terminated" in err
    assert runs_by_status(project) == {"FAILED": ["base"]}
    assert not (project.path / "models/base").exists() and not _outputs_left(project)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tracking_server_down_fails_fast_before_training(prepared, tmp_path):
    project = copy_project(prepared, tmp_path / "proj")
    port = _closed_port()
    project.env["MLFLOW_TRACKING_URI"] = f"http://alice:s3cret-pw@127.0.0.1:{port}"
    proc = project.run("dvc", "repro", check=False)
    assert proc.returncode != 0 and "failed to reproduce 'train'" in proc.stderr
    line = error_line(proc)
    # the password never shows, in the error line or anywhere else
    assert f"MLflow tracking server http://alice:***@127.0.0.1:{port} is not reachable" in line
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "unset MLFLOW_TRACKING_URI" in line
    assert "train base" not in proc.stderr  # no epoch started
    assert not checkpoints(project) and not (project.path / "models/base").exists()
    assert not (project.path / "mlflow.db").exists()


def test_tracking_server_down_at_evaluate_leaves_no_outputs(messy_pipeline, tmp_path):
    project = copy_project(messy_pipeline, tmp_path / "proj")
    project.env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{_closed_port()}"
    proc = project.run("dvc", "repro", "--force", "--single-item", "evaluate", check=False)
    assert proc.returncode != 0
    assert "is not reachable" in error_line(proc)
    left = [o for o in outputs_from(project, "evaluate") if (project.path / o).exists()]
    assert not left, f"a failed evaluate left {left}"
