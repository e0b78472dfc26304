"""Launching ``mlflow server --app-name basic-auth`` on the cluster; waiting until it answers."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

from sluice.errors import SluiceError
from sluice.server import pgcluster
from sluice.server.folder import ServerFolder
from sluice.server.private import write_private

ADMIN = "admin"
READY_TIMEOUT_S = 120.0
AUTH_CACHE_S = 60


def database_url(pg_port: int) -> str:
    """The server's own PostgreSQL URL, without a password (PGPASSFILE holds it)."""
    return f"postgresql+psycopg://{pgcluster.USER}@127.0.0.1:{pg_port}"


def start_mlflow(
    folder: ServerFolder, port: int, pg_port: int, artifacts: str, workers: int, keys: dict
) -> subprocess.Popen:
    """Launch ``mlflow server --app-name basic-auth`` in its own session, logging to a file."""
    _write_auth_ini(folder, database_url(pg_port), keys["admin"])
    cmd = [
        *(sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"),
        *("--backend-store-uri", f"{database_url(pg_port)}/mlflow", "--serve-artifacts"),
        *("--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(workers)),
    ]
    if workers > 1:  # a worker busy importing on a loaded machine is not a dead one
        cmd += ["--uvicorn-opts", "--timeout-worker-healthcheck 60"]
    if artifacts == str(folder.artifacts):  # the proxy is the only way in, not the file system
        folder.artifacts.mkdir(mode=0o700, exist_ok=True)
    log_fd = os.open(folder.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as log:
        return subprocess.Popen(
            cmd, cwd=folder.root, env=_server_env(folder, keys), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _write_auth_ini(folder: ServerFolder, db: str, admin_password: str) -> None:
    """The basic-auth app's settings: its user database, the admin, who may read by default."""
    write_private(
        folder.auth_ini,
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {db}/mlflow_auth\nadmin_username = {ADMIN}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Checking a password is a deliberately slow hash (~0.5 s of CPU here): without the cache
        # every request pays it. A password change through the API clears the handling worker's
        # entry at once; other workers may accept the old password for up to this long.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_S}\n",
    )


def _server_env(folder: ServerFolder, keys: dict) -> dict[str, str]:
    """The server's environment: no client MLFLOW_* settings, its secrets through files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # The database password goes in a libpq password file, never on a command line.
    pgcluster.write_passfile(folder.passfile, keys["db"])
    env.update(
        PGPASSFILE=str(folder.passfile),
        MLFLOW_AUTH_CONFIG_PATH=str(folder.auth_ini),
        MLFLOW_FLASK_SERVER_SECRET_KEY=keys["flask"],
        MLFLOW_DISABLE_TELEMETRY="true",
        # No background job runner (GenAI evaluation jobs): three fewer processes to start.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    # Keep the S3 settings (endpoint, keys) a user exported for --artifacts-destination s3://.
    env.update({k: v for k, v in os.environ.items() if k.startswith("MLFLOW_S3_")})
    return env


def wait_ready(proc: subprocess.Popen, uri: str, password: str, log: Path) -> None:
    """Wait until the server answers an authenticated request; fail with its log's tail."""
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen

    token = base64.b64encode(f"{ADMIN}:{password}".encode()).decode()
    request = Request(
        f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
        headers={"Authorization": f"Basic {token}"},
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise SluiceError(
                f"mlflow server exited with code {proc.returncode} while starting "
                f"({tail[0] if tail else 'no output'}); see {log}"
            )
        try:
            with urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except HTTPError as exc:
            raise SluiceError(
                f"the new server at {uri} answered HTTP {exc.code} to its admin; see {log}"
            ) from None
        except (URLError, OSError):
            time.sleep(0.2)
    raise SluiceError(f"mlflow server did not answer within {READY_TIMEOUT_S:.0f} s; see {log}")
