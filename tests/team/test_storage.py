"""Shared storage: DVC's default local remote, and S3 through dvc-s3 and behind the tracking
server, against a real S3-compatible server on loopback (`rclone serve s3`)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_project

from .conftest import server_home, start_server, stop_server

pytestmark = pytest.mark.slow

OUTPUTS = ("data/interim", "data/processed")  # cached outputs (the reports are git's)


def _hashes(root: Path) -> dict[str, str]:
    """MD5 of every file the clean and split stages wrote to DVC's cache, by path."""
    files = [p for name in OUTPUTS for p in sorted((root / name).rglob("*"))]
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
    }


def test_dvc_push_and_pull_through_the_default_remote_and_s3(s3, tmp_path):
    project = make_project(tmp_path / "proj")
    project.run("dvc", "repro", "split")  # real outputs: the cleaned table and the splits
    before = _hashes(project.path)
    assert len(before) >= 4
    # The default remote: a local folder (git-ignored), no set-up needed.
    project.run("dvc", "push")
    assert any((project.path / ".sluice" / "dvc-storage").rglob("*"))
    remote = f"s3://{s3.bucket}/dvc"
    project.run("dvc", "remote", "add", "-d", "shared", remote)
    project.run("dvc", "remote", "modify", "shared", "endpointurl", s3.endpoint)
    project.run("dvc", "remote", "modify", "--local", "shared", "access_key_id", s3.key)
    project.run("dvc", "remote", "modify", "--local", "shared", "secret_access_key", s3.secret)
    project.run("dvc", "push")
    assert any((s3.folder / s3.bucket / "dvc").rglob("*"))
    shutil.rmtree(project.path / ".dvc" / "cache")
    for name in OUTPUTS:
        shutil.rmtree(project.path / name)
    project.run("dvc", "pull", "--with-deps", "split")  # only these stages have run
    assert _hashes(project.path) == before
    assert "in sync" in project.run("dvc", "status", "-c", "--with-deps", "split").stdout
    assert "up to date" in project.run("dvc", "status", "split").stdout


def test_a_model_logged_and_loaded_through_s3_artifacts(s3, login, monkeypatch):
    import mlflow
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    with server_home() as home:
        server = start_server(
            home / "server", "--artifacts-destination", f"s3://{s3.bucket}/mlflow",
            env=s3.env(dict(os.environ)),
        )  # fmt: skip
        try:
            # Clients need no S3 keys: the server proxies artifacts.
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
                monkeypatch.delenv(name, raising=False)
            login(server)
            experiment_id = mlflow.create_experiment("s3")
            with mlflow.start_run(experiment_id=experiment_id):
                mlflow.sklearn.log_model(
                    model, name="model", registered_model_name="s3-model",
                    input_example=X[:2], pip_requirements=["scikit-learn"],
                )  # fmt: skip
            loaded = mlflow.pyfunc.load_model("models:/s3-model/1")
            np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        finally:
            stop_server(server)
    stored = [p.name for p in (s3.folder / s3.bucket / "mlflow").rglob("*") if p.is_file()]
    assert "MLmodel" in stored
