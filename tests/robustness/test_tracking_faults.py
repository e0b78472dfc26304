"""The tracking store going away or changing under the pipeline: a real ``mlflow server``
killed in the middle of training, and models evaluated against a store that never saw them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest
from conftest import BIN

from .conftest import (
    LONG_TRAIN,
    checkpoints,
    copy_project,
    error_line,
    file_snapshot,
    model_versions,
    runs_by_status,
    start,
    wait_for,
)

pytestmark = pytest.mark.slow


class MlflowServer:
    """A plain ``mlflow server`` on 127.0.0.1 over a SQLite store kept across restarts."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{self.home / 'mlflow.db'}"]
        cmd += ["--artifacts-destination", str(self.home / "artifacts"), "--workers", "1"]
        log = open(self.home / "server.log", "a")  # noqa: SIM115 (the server's, until killed)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # as sluice's server: no job runner
        self.proc = subprocess.Popen(
            cmd, cwd=self.home, stdout=log, stderr=log, env=env, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.home / "server.log").read_text()[-3000:]
            try:
                with urlopen(f"{self.uri}/health", timeout=5):
                    return
            except (URLError, OSError):
                time.sleep(0.3)
        pytest.fail("mlflow server did not start in 120 s")

    def kill(self) -> None:
        """kill -9 the server and its workers (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def client(self):
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


@pytest.fixture
def server(tmp_path):
    found = MlflowServer(tmp_path / "server")
    found.start()
    yield found
    found.kill()


def test_a_server_killed_mid_training_stops_it_in_one_line_and_the_run_ends_failed(
    prepared, tmp_path, server
):
    project = copy_project(prepared, tmp_path / "proj")
    project.set_params(LONG_TRAIN)
    project.env["MLFLOW_TRACKING_URI"] = server.uri
    proc = start(project, "python", "-m", "stages.train")
    wait_for(lambda: bool(checkpoints(project)), proc)  # training is under way
    server.kill()
    killed = time.monotonic()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err[-3000:]
    assert time.monotonic() - killed < 60  # bounded retries, not minutes of them
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    line = error_line(done)
    assert line.startswith(f"error: MLflow tracking server {server.uri} stopped answering")
    assert "start it again (make server), then re-run the stage" in line
    assert not (project.path / "models/base").exists()

    server.start()  # the same store: the killed stage's run is still RUNNING there
    client = server.client()
    (experiment,) = [e for e in client.search_experiments() if e.name == "sluice"]
    (orphan,) = client.search_runs([experiment.experiment_id])
    assert orphan.info.status == "RUNNING"
    project.set_params({"train": {"epochs": 4, "patience": 4, "checkpoint_every": 2}})
    project.stage("train")
    statuses = {
        r.info.run_id: r.info.status for r in client.search_runs([experiment.experiment_id])
    }
    assert statuses.pop(orphan.info.run_id) == "FAILED"
    assert list(statuses.values()) == ["FINISHED"]


def test_evaluate_against_another_store_refuses_before_registering(messy_pipeline, tmp_path):
    project = copy_project(messy_pipeline, tmp_path / "proj")  # the models, a fresh store
    before = {k: v for k, v in file_snapshot(project.path).items() if not k.startswith("mlflow")}
    proc = project.stage("evaluate", check=False)
    assert proc.returncode == 1
    line = error_line(proc)
    assert line.startswith("error: the training runs of models/base (run ")
    assert "are not in the MLflow store sqlite:///" in line
    assert "re-run training with this one (dvc repro --force train)" in line
    assert "set MLFLOW_TRACKING_URI back to the store they were trained with" in line
    assert not model_versions(project) and not runs_by_status(project)
    after = {k: v for k, v in file_snapshot(project.path).items() if not k.startswith("mlflow")}
    assert after == before  # no report, plot or registration record written
