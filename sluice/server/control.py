"""Start, stop and look at a server; what each did is returned for the command to print."""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass

from sluice.errors import SluiceError
from sluice.server import pgcluster
from sluice.server.folder import OPTUNA, ServerFolder
from sluice.server.launch import ADMIN, start_mlflow, wait_ready
from sluice.server.private import write_private
from sluice.server.processes import (
    find_mlflow_server,
    free_port,
    is_mlflow_server,
    port_free,
    require_free_port,
    stop_process_group,
)

DATABASES = ("mlflow", "mlflow_auth")  # tracking + registry; basic-auth users and permissions


@dataclass(frozen=True)
class Started:
    """A running server, as ``start`` found or made it."""

    uri: str
    pid: int
    pg_port: int
    exports: str  # the ``export`` lines to paste
    password_shown: bool  # the exports carry the admin password (its first start only)
    artifacts: str
    seconds: float | None = None  # None: it was running already
    note: str = ""


def default_workers() -> int:
    """One uvicorn worker per two cores, at least one and at most four."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def storage_url(pg_port: int) -> str:
    """The Optuna storage URL of the tuning database (no password: PGPASSFILE holds it)."""
    return f"postgresql+psycopg://{OPTUNA}@127.0.0.1:{pg_port}/{OPTUNA}"


def running_pid(folder: ServerFolder) -> int | None:
    """The pid of this folder's ``mlflow server`` if it is alive (None otherwise)."""
    pid = folder.state().get("pid")
    return pid if pid and is_mlflow_server(pid, folder.root) else None


def start(folder: ServerFolder, port: int, artifacts: str | None, workers: int) -> Started:
    """Start PostgreSQL and the tracking server (or say that they run already)."""
    folder.claim()
    pid, state = running_pid(folder), folder.state()
    if pid and folder.cluster.running():
        note = "" if state["port"] == port else f"not {port}: `make server-stop` first"
        return _client_view(folder, state, pid, note=note)
    if pid:  # its database went away: start both afresh
        stop_process_group(pid)
    began = time.perf_counter()
    require_free_port(port)
    keys = folder.secrets()
    pg_port = _start_database(folder, keys)
    destination = artifacts or str(folder.artifacts)
    proc = start_mlflow(folder, port, pg_port, destination, workers, keys)
    state = {"pid": proc.pid, "port": port, "uri": f"http://127.0.0.1:{port}", "pg_port": pg_port}
    folder.write_state({**state, "workers": workers, "artifacts": artifacts})
    try:
        wait_ready(proc, state["uri"], keys["admin"], folder.log)
    except BaseException:
        stop(folder)
        raise
    return _client_view(folder, state, proc.pid, seconds=time.perf_counter() - began)


def _client_view(folder: ServerFolder, state: dict, pid: int, **extra) -> Started:
    """Write the clients' files (private, rewritten each start) and say what to export.

    The admin password appears in the exports only when its file is new; afterwards they read
    it from that file, so that a terminal's scrollback or a CI log keeps no copy.
    """
    keys = folder.secrets()
    shown = not folder.password_file.exists()
    pgcluster.write_passfile(folder.optuna_passfile, keys[OPTUNA], OPTUNA, OPTUNA)
    write_private(folder.password_file, keys["admin"] + "\n")
    write_private(folder.credentials, _exports(folder, state["uri"]))
    password = keys["admin"] if shown else None
    artifacts = state.get("artifacts") or str(folder.artifacts)
    exports = _exports(folder, state["uri"], password)
    return Started(state["uri"], pid, state["pg_port"], exports, shown, artifacts, **extra)


def _exports(folder: ServerFolder, uri: str, password: str | None = None) -> str:
    """The four ``export`` lines; the password itself, or the command that reads its file."""
    shown = password or f'"$(cat {shlex.quote(str(folder.password_file))})"'
    return (
        f"export MLFLOW_TRACKING_URI={uri}\nexport MLFLOW_TRACKING_USERNAME={ADMIN}\n"
        f"export MLFLOW_TRACKING_PASSWORD={shown}\n"
        f"export PGPASSFILE={shlex.quote(str(folder.optuna_passfile))}\n"
    )


def _start_database(folder: ServerFolder, keys: dict[str, str]) -> int:
    """Initialise the cluster on first use, start it on a free port, create the databases."""
    cluster, pg_port = folder.cluster, int(folder.state().get("pg_port") or 0)
    if not cluster.initialised():
        cluster.init(keys["db"])
    if cluster.running():
        if not pg_port:
            raise SluiceError(
                f"PostgreSQL in {cluster.data} runs without a recorded port; stop it with "
                f"`sluice server stop --state-dir {folder.root}`"
            )
    else:
        # The last port again when it is free, so that a tune.storage URL stays valid.
        pg_port = pg_port if pg_port and port_free(pg_port) else free_port()
        cluster.start(pg_port)
    for name in DATABASES:
        pgcluster.create_database(pg_port, keys["db"], name)
    pgcluster.create_role(pg_port, keys["db"], OPTUNA, keys[OPTUNA])
    pgcluster.create_database(pg_port, keys["db"], OPTUNA, owner=OPTUNA)
    return pg_port


def stop(folder: ServerFolder) -> list[str]:
    """Stop the tracking server, then PostgreSQL; return what was stopped.

    Without ``server.json`` the server is found by its working directory, the folder.
    """
    recorded = folder.state()
    pid = running_pid(folder) if recorded else find_mlflow_server(folder.root)
    stopped = []
    if pid:
        stop_process_group(pid)
        stopped.append(f"MLflow tracking server (pid {pid})")
    if folder.cluster.running():
        folder.cluster.stop()
        stopped.append("PostgreSQL")
    return stopped


def status(folder: ServerFolder) -> tuple[str, int] | None:
    """(uri, pid) of the running server; None when it does not run."""
    pid = running_pid(folder)
    if pid and folder.cluster.running():
        return folder.state()["uri"], pid
    return None
