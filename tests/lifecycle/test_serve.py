"""`mlflow models serve` of the champion answers like `sluice predict` (real server process),
with the champion's calibrated probabilities and its labels under its decision threshold."""

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

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sluice.cli import app
from sluice.model.bundle import load_bundle

from .conftest import BIN, SERVED_ROWS

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


def serve_rows(cwd, env: dict, model_uri: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Start `mlflow models serve` of ``model_uri`` on loopback, score ``rows``, stop it."""
    port, log_path = free_port(), cwd / "serve.log"
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [*cmd, "-p", str(port), "--host", "127.0.0.1"],
            cwd=cwd,
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
    return pd.DataFrame(answer["predictions"])


@pytest.mark.slow
def test_served_champion_matches_sluice_predict(project):
    assert CliRunner().invoke(app, ["promote"]).exit_code == 0
    features = [c for c in project.test.columns if c != "target"]
    rows = project.test[features].head(SERVED_ROWS)
    rows.to_csv(project.root / "rows.csv", index=False)
    result = CliRunner().invoke(app, ["predict", "rows.csv", "-o", "preds.csv"])
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(project.root / "preds.csv")

    env = {**project.env, "MLFLOW_TRACKING_URI": f"sqlite:///{project.root / 'mlflow.db'}"}
    served = serve_rows(project.root, env, f"models:/{project.name}@champion", rows)
    # A binary model with a decision threshold also returns its label under that threshold.
    assert list(served.columns) == ["0", "1", "predicted"] and len(served) == len(rows)
    prob = served[["0", "1"]].to_numpy(dtype=float)
    np.testing.assert_allclose(prob, expected[["prob_0", "prob_1"]].to_numpy(), atol=1e-6)
    assert served["predicted"].astype(str).tolist() == expected["predicted"].astype(str).tolist()
    champion = load_bundle(project.bundles["good"])
    np.testing.assert_allclose(prob, champion.predict_proba(rows), atol=1e-6)  # calibrated
    assert (served["predicted"] == np.where(prob[:, 1] >= champion.threshold, "1", "0")).all()
    assert (served["predicted"] != np.where(prob[:, 1] > 0.5, "1", "0")).any()  # not the argmax
    signature = mlflow.models.get_model_info(f"models:/{project.name}@champion").signature
    assert signature.outputs.input_names() == ["0", "1", "predicted"]
