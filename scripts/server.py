"""``make server``: PostgreSQL plus an MLflow tracking server on it, for a team.

The server has basic authentication (its user database on the same PostgreSQL, an admin password
generated on first start) and proxies artifacts (to a local folder, or ``s3://...``). Everything
it keeps lies in one git-ignored folder, ``.sluice/server/`` by default: the database cluster,
logs, ``server.json`` (pids and ports) and ``credentials.env`` (the three ``export`` lines).
Both listen on 127.0.0.1 only.

    python scripts/server.py start [--port 5000] [--artifacts-destination s3://b/p]
    python scripts/server.py stop
    python scripts/server.py status
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pgcluster
from pgcluster import Cluster

from sluice.errors import SluiceError, report_errors

ADMIN = "admin"
DATABASES = ("mlflow", "mlflow_auth")  # tracking + registry; basic-auth users and permissions
OPTUNA = "optuna"  # the shared tuning studies' database, and the only role that may use it
READY_TIMEOUT_S = 120.0
AUTH_CACHE_S = 60


class Server:
    """The files of one server under ``root`` (created on first start)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.cluster = Cluster(self.root / "pg")
        self.secrets_file = self.root / "secrets.json"
        self.state_file = self.root / "server.json"
        self.auth_ini = self.root / "basic_auth.ini"
        self.credentials = self.root / "credentials.env"
        self.log = self.root / "mlflow.log"
        self.artifacts = self.root / "artifacts"

    def state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}

    def secrets(self) -> dict[str, str]:
        """Passwords made on first use: PostgreSQL's, the admin's, Flask's CSRF key, and the
        tuning database's (added to an older server's secrets on its next start)."""
        kept = json.loads(self.secrets_file.read_text()) if self.secrets_file.is_file() else {}
        keys = ("db", "admin", "flask", OPTUNA)
        if any(key not in kept for key in keys):
            kept |= {key: secrets.token_urlsafe(24) for key in keys if key not in kept}
            _write_private(self.secrets_file, json.dumps(kept))
        return kept

    def running_pid(self) -> int | None:
        """The pid of this folder's ``mlflow server`` if it is alive (None otherwise)."""
        pid = self.state().get("pid")
        return pid if pid and _is_mlflow_server(pid) else None


def start(server: Server, port: int, artifacts: str | None, workers: int) -> None:
    """Start PostgreSQL and the tracking server (a no-op that says so when already running)."""
    pid, state = server.running_pid(), server.state()
    if pid and server.cluster.running():
        note = "" if state["port"] == port else f" (not {port}: `make server-stop` first)"
        print(f"MLflow tracking server already running at {state['uri']}{note}, pid {pid}")
        print(server.credentials.read_text(), end="")
        print(f"# tune.storage for a shared Optuna study: {storage_url(state['pg_port'])}")
        return
    if pid:  # its database went away: start both afresh
        _stop_mlflow(pid)
    started = time.perf_counter()
    server.root.mkdir(parents=True, exist_ok=True)
    server.root.chmod(0o711)  # PostgreSQL's own user must reach pg/; the files stay private
    _require_free_port(port)
    keys = server.secrets()
    pg_port = _start_database(server, keys["db"])
    proc = _start_mlflow(server, port, pg_port, artifacts or str(server.artifacts), workers, keys)
    uri = f"http://127.0.0.1:{port}"
    state = {"pid": proc.pid, "port": port, "uri": uri, "pg_port": pg_port, "workers": workers}
    server.state_file.write_text(json.dumps({**state, "artifacts": artifacts}, indent=2))
    try:
        _wait_ready(proc, uri, keys["admin"], server.log)
    except BaseException:
        stop(server, quiet=True)
        raise
    # Shared tuning: the study database's password reaches Optuna through libpq's PGPASSFILE.
    passfile = pgcluster.write_passfile(server.root / "optuna.pgpass", keys[OPTUNA], OPTUNA, OPTUNA)
    exports = (
        f"export MLFLOW_TRACKING_URI={uri}\nexport MLFLOW_TRACKING_USERNAME={ADMIN}\n"
        f"export MLFLOW_TRACKING_PASSWORD={keys['admin']}\nexport PGPASSFILE={passfile}\n"
    )
    _write_private(server.credentials, exports)
    print(
        f"MLflow tracking server ready at {uri} in {time.perf_counter() - started:.1f} s "
        f"(PostgreSQL on 127.0.0.1:{pg_port}, artifacts in {artifacts or server.artifacts}, "
        f"log {server.log}); as user {ADMIN} (also in {server.credentials}):"
    )
    print(exports, end="")
    print(f"# tune.storage for a shared Optuna study: {storage_url(pg_port)}")


def storage_url(pg_port: int) -> str:
    """The Optuna storage URL of the tuning database (no password: PGPASSFILE holds it)."""
    return f"postgresql+psycopg://{OPTUNA}@127.0.0.1:{pg_port}/{OPTUNA}"


def _start_database(server: Server, password: str) -> int:
    """Initialise the cluster on first use, start it on a free port, create the databases."""
    cluster = server.cluster
    if not cluster.initialised():
        cluster.init(password)
    if cluster.running():
        pg_port = int(server.state().get("pg_port") or 0)
        if not pg_port:
            raise SluiceError(
                f"PostgreSQL in {cluster.data} runs without a recorded port; stop it with "
                f"`{sys.executable} {__file__} stop --state-dir {server.root}`"
            )
    else:
        # The last port again when it is free, so that a tune.storage URL stays valid.
        pg_port = int(server.state().get("pg_port") or 0)
        pg_port = pg_port if pg_port and _port_free(pg_port) else free_port()
        cluster.start(pg_port)
    for name in DATABASES:
        pgcluster.create_database(pg_port, password, name)
    pgcluster.create_role(pg_port, password, OPTUNA, server.secrets()[OPTUNA])
    pgcluster.create_database(pg_port, password, OPTUNA, owner=OPTUNA)
    return pg_port


def _start_mlflow(
    server: Server, port: int, pg_port: int, artifacts: str, workers: int, keys: dict
) -> subprocess.Popen:
    """Launch ``mlflow server --app-name basic-auth`` in its own session, logging to a file."""
    db = f"postgresql+psycopg://{pgcluster.USER}@127.0.0.1:{pg_port}"
    _write_private(
        server.auth_ini,
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {db}/mlflow_auth\nadmin_username = {ADMIN}\n"
        f"admin_password = {keys['admin']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Checking a password is a deliberately slow hash (~0.5 s of CPU here): without the cache
        # every request pays it. A password change through the API clears the handling worker's
        # entry at once; other workers may accept the old password for up to this long.
        f"auth_cache_ttl_seconds = {AUTH_CACHE_S}\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # The database password goes in a libpq password file, never on a command line.
    passfile = pgcluster.write_passfile(server.root / "pgpass", keys["db"])
    env.update(
        PGPASSFILE=str(passfile),
        MLFLOW_AUTH_CONFIG_PATH=str(server.auth_ini),
        MLFLOW_FLASK_SERVER_SECRET_KEY=keys["flask"],
        MLFLOW_DISABLE_TELEMETRY="true",
        # No background job runner (GenAI evaluation jobs): three fewer processes to start.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    # Keep the S3 settings (endpoint, keys) a user exported for --artifacts-destination s3://.
    env.update({k: v for k, v in os.environ.items() if k.startswith("MLFLOW_S3_")})
    cmd = [
        *(sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"),
        *("--backend-store-uri", f"{db}/mlflow", "--serve-artifacts"),
        *("--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(workers)),
    ]
    if workers > 1:  # a worker busy importing on a loaded machine is not a dead one
        cmd += ["--uvicorn-opts", "--timeout-worker-healthcheck 60"]
    if artifacts == str(server.artifacts):  # the proxy is the only way in, not the file system
        server.artifacts.mkdir(mode=0o700, exist_ok=True)
    log_fd = os.open(server.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as log:
        return subprocess.Popen(
            cmd, cwd=server.root, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _wait_ready(proc: subprocess.Popen, uri: str, password: str, log: Path) -> None:
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


def stop(server: Server, quiet: bool = False) -> None:
    """Stop the tracking server, then PostgreSQL."""
    pid, stopped = server.running_pid(), []
    if pid:
        _stop_mlflow(pid)
        stopped.append(f"MLflow tracking server (pid {pid})")
    if server.cluster.initialised() and server.cluster.running():
        server.cluster.stop()
        stopped.append("PostgreSQL")
    if not quiet:
        print(f"stopped {' and '.join(stopped)}" if stopped else f"not running ({server.root})")


def _stop_mlflow(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return _is_mlflow_server(pgid) or any(
        _pgid(int(p.name)) == pgid for p in Path("/proc").iterdir() if p.name.isdigit()
    )


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _is_mlflow_server(pid: int) -> bool:
    """Whether ``pid`` is a live ``mlflow server`` (not a recycled pid), zombies excluded."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return status != "Z" and b"mlflow" in cmdline and b"server" in cmdline


def status(server: Server) -> int:
    """Print whether the server runs; exit code 0 if it does, 3 if not."""
    pid = server.running_pid()
    if pid and server.cluster.running():
        print(f"running at {server.state()['uri']} (pid {pid}, state in {server.root})")
        return 0
    print(f"not running (state in {server.root})")
    return 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _require_free_port(port: int) -> None:
    if not _port_free(port):
        raise SluiceError(
            f"port {port} on 127.0.0.1 is taken by another program; pick another one "
            f"(make server PORT={port + 50})"
        )


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created that way: never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def default_workers() -> int:
    """One uvicorn worker per two cores, at least one and at most four."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _parser() -> argparse.ArgumentParser:
    from sluice.tracking.store import project_root

    parser = argparse.ArgumentParser(prog="python scripts/server.py", description=__doc__)
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", type=Path, default=project_root() / ".sluice" / "server")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument(
        "--artifacts-destination",
        default=None,
        help="where proxied artifacts go (default: <state-dir>/artifacts), e.g. s3://bucket/mlflow",
    )
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    server = Server(args.state_dir)
    if args.action == "start":
        start(server, args.port, args.artifacts_destination, args.workers)
    elif args.action == "stop":
        stop(server)
    else:
        return status(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
