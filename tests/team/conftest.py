"""A real team set-up for the tests, on loopback only, stopped at the end.

``team_server``: PostgreSQL and ``mlflow server --app-name basic-auth`` started once per test
session by ``sluice server start`` (what ``make server`` runs). ``s3``: ``rclone serve s3`` on a
temporary folder. Commands run as a user would run them, with the credentials the server printed.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN

SLUICE = BIN / "sluice"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sluice_server(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``sluice server`` (start, stop, status) as ``make server`` does."""
    return subprocess.run(
        [str(SLUICE), "server", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


@dataclass(frozen=True)
class TeamServer:
    """A started server: where its state is, and what ``start`` printed."""

    state_dir: Path
    port: int
    output: str

    @property
    def exports(self) -> dict[str, str]:
        """The ``export NAME=value`` lines of the output (the tracking login, PGPASSFILE)."""
        pairs = [line.removeprefix("export ").split("=", 1) for line in self.output.splitlines()]
        wanted = ("MLFLOW_", "PGPASSFILE")
        return {p[0]: p[1] for p in pairs if len(p) == 2 and p[0].startswith(wanted)}

    @property
    def storage(self) -> str:
        """The tuning database's Optuna storage URL that the server printed."""
        return re.search(r"tune\.storage for a shared Optuna study: (\S+)", self.output).group(1)

    @property
    def uri(self) -> str:
        return self.exports["MLFLOW_TRACKING_URI"]

    @property
    def password(self) -> str:
        """The admin password, as the first start printed it (later starts print none)."""
        return self.exports["MLFLOW_TRACKING_PASSWORD"]

    def env(self, base: dict[str, str], user: str | None = None, password: str | None = None):
        """``base`` with the tracking URI and a login (the admin's unless given)."""
        env = {k: v for k, v in base.items() if not k.startswith("MLFLOW_TRACKING_")}
        env.update(self.exports)
        if user is not None:
            env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password or "")
        return env


def start_server(state_dir: Path, *args: str, env: dict | None = None) -> TeamServer:
    port = free_port()
    started = sluice_server("start", "--state-dir", str(state_dir), "--port", str(port), *args,
                            env=env)  # fmt: skip
    if started.returncode != 0:
        log = state_dir / "mlflow.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        sluice_server("stop", "--state-dir", str(state_dir))
        pytest.fail(f"server did not start:\n{started.stdout}\n{started.stderr}\n{tail}")
    return TeamServer(state_dir, port, started.stdout)


def stop_server(server: TeamServer) -> None:
    stopped = sluice_server("stop", "--state-dir", str(server.state_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert sluice_server("status", "--state-dir", str(server.state_dir)).returncode == 3


@contextmanager
def server_home() -> Iterator[Path]:
    """A temporary folder that PostgreSQL's own user can reach (pytest's tmp_path is private)."""
    home = Path(tempfile.mkdtemp(prefix="sluice-team-"))
    home.chmod(0o711)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def team_server() -> Iterator[TeamServer]:
    """One server for the session's tests (default settings: artifacts proxied to a folder)."""
    with server_home() as home:
        server = start_server(home / "server")
        try:
            yield server
        finally:
            stop_server(server)


@pytest.fixture
def login(monkeypatch):
    """``login(server)``: this process's MLflow on ``server`` as its admin, until the test ends."""
    import mlflow

    def use(server: TeamServer):
        monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        for name, value in server.exports.items():
            monkeypatch.setenv(name, value)
        mlflow.set_tracking_uri(server.uri)
        mlflow.set_registry_uri(server.uri)
        return mlflow.MlflowClient(server.uri, server.uri)

    yield use
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@dataclass(frozen=True)
class S3:
    """An S3-compatible server: endpoint, keys and one bucket."""

    endpoint: str
    key: str
    secret: str
    bucket: str
    folder: Path  # what the server serves: one subfolder per bucket

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the variables boto3 and MLflow read for S3."""
        return {
            **base,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3]:
    """``rclone serve s3`` on loopback, serving a temporary folder (its subfolders are buckets)."""
    root = tmp_path_factory.mktemp("s3")
    (root / "data" / "sluice").mkdir(parents=True)
    # Hex, not url-safe base64: a secret that starts with "-" reads as an option to `dvc remote`.
    port, key, secret = free_port(), "sluice-test", secrets.token_hex(16)
    log = open(root / "rclone.log", "w")  # noqa: SIM115  (open while the server runs)
    proc = subprocess.Popen(
        [str(BIN / "rclone"), "serve", "s3", "--addr", f"127.0.0.1:{port}",
         "--auth-key", f"{key},{secret}", "--config", str(root / "rclone.conf"),
         str(root / "data")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_port(port, proc, root / "rclone.log")
        yield S3(f"http://127.0.0.1:{port}", key, secret, "sluice", root / "data")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"rclone exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"rclone did not listen on {port} within {timeout_s} s")


def http_status(url: str, user: str | None = None, password: str = "") -> int:
    """The HTTP status of a GET, with basic authentication when ``user`` is given."""
    import base64
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    headers = {}
    if user is not None:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
    try:
        with urlopen(Request(url, headers=headers), timeout=30) as response:
            return response.status
    except HTTPError as exc:
        return exc.code


def lines(text: str) -> list[str]:
    """Non-empty lines."""
    return [line for line in text.splitlines() if line.strip()]
