"""`mlflow models serve` of the champion answers like `sluice predict` (real server process)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sluice.cli import app

from .conftest import BIN

STARTUP_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"server not up after {STARTUP_S} s:\n{log_path.read_text()[-3000:]}")


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def stop(server: subprocess.Popen) -> None:
    """Terminate the server's process group (it forks uvicorn workers), then reap it."""
    with contextlib.suppress(ProcessLookupError):  # the group may be gone already
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@pytest.mark.slow
def test_served_champion_matches_sluice_predict(project):
    assert CliRunner().invoke(app, ["promote"]).exit_code == 0
    features = [c for c in project.test.columns if c != "target"]
    rows = project.test[features].head(25)
    rows.to_csv(project.root / "rows.csv", index=False)
    result = CliRunner().invoke(app, ["predict", "rows.csv", "-o", "preds.csv"])
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(project.root / "preds.csv")

    port, log_path = free_port(), project.root / "serve.log"
    env = {**project.env, "MLFLOW_TRACKING_URI": f"sqlite:///{project.root / 'mlflow.db'}"}
    cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{project.name}@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            cmd,
            cwd=project.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server, log_path)
        split = json.loads(rows.to_json(orient="split", index=False))
        answer = post_json(f"{url}/invocations", {"dataframe_split": split})
    finally:
        stop(server)
    served = pd.DataFrame(answer["predictions"])
    assert list(served.columns) == ["0", "1"] and len(served) == len(rows)
    np.testing.assert_allclose(
        served[["0", "1"]].to_numpy(), expected[["prob_0", "prob_1"]].to_numpy(), atol=1e-6
    )
    assert (served.to_numpy().argmax(axis=1).astype(str) == expected["predicted"].astype(str)).all()
