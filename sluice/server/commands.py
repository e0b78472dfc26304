"""``sluice server start|stop|status``: the commands, and what they print.

``make server`` and ``make server-stop`` run them. A mistake prints one ``error: ...`` line and
exits 1; ``status`` exits 3 when the server does not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sluice.errors import report_errors

EXIT_NOT_RUNNING = 3

app = typer.Typer(
    name="server",
    help="A team tracking server: PostgreSQL and MLflow with basic auth, on 127.0.0.1.",
    no_args_is_help=True,
)

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="The server's folder: database, logs, credentials (default: .sluice/server/ at "
        "the repository root). `start` creates it and refuses a folder it did not create.",
    ),
]


def _folder(state_dir: Path | None):
    """The server folder named, or the default one at the repository root."""
    from sluice.server.folder import ServerFolder
    from sluice.tracking.store import project_root

    return ServerFolder(state_dir or project_root() / ".sluice" / "server")


@app.command()
@report_errors
def start(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="MLflow's port.")] = 5000,
    state_dir: StateDirOpt = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="uvicorn workers (default: one per 2 cores, <= 4)."),
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(
            "--artifacts-destination",
            help="Where proxied artifacts go (default: artifacts/ in the state folder), e.g. "
            "s3://bucket/mlflow (with the AWS_* and MLFLOW_S3_ENDPOINT_URL variables set).",
        ),
    ] = None,
) -> None:
    """Start PostgreSQL and the tracking server; print the `export` lines for clients.

    The admin password is printed on the first start only; later starts print lines that
    read it from its file. Starting a running server only says so.
    """
    from sluice.server.control import default_workers
    from sluice.server.control import start as start_server

    folder = _folder(state_dir)
    started = start_server(folder, port, artifacts_destination, workers or default_workers())
    _print_started(folder, started)


@app.command()
@report_errors
def stop(state_dir: StateDirOpt = None) -> None:
    """Stop the tracking server, then PostgreSQL (their data stay)."""
    from sluice.server.control import stop as stop_server

    folder = _folder(state_dir)
    stopped = stop_server(folder)
    typer.echo(f"stopped {' and '.join(stopped)}" if stopped else f"not running ({folder.root})")


@app.command()
@report_errors
def status(state_dir: StateDirOpt = None) -> None:
    """Whether the server runs: exit code 0 if it does, 3 if not."""
    from sluice.server.control import status as server_status

    folder = _folder(state_dir)
    found = server_status(folder)
    if found is None:
        typer.echo(f"not running (state in {folder.root})")
        raise typer.Exit(EXIT_NOT_RUNNING)
    uri, pid = found
    typer.echo(f"running at {uri} (pid {pid}, state in {folder.root})")


def _print_started(folder, started) -> None:
    """Where it runs, the ``export`` lines, where the password is, the tuning storage URL."""
    from sluice.server.control import storage_url

    if started.seconds is None:
        note = f" ({started.note})" if started.note else ""
        running = f"MLflow tracking server already running at {started.uri}{note}"
        typer.echo(f"{running}, pid {started.pid}")
    else:
        typer.echo(
            f"MLflow tracking server ready at {started.uri} in {started.seconds:.1f} s "
            f"(PostgreSQL on 127.0.0.1:{started.pg_port}, artifacts in {started.artifacts}, "
            f"log {folder.log}); as user admin:"
        )
    typer.echo(started.exports, nl=False)
    if started.password_shown:
        typer.echo(
            f"# the admin password is shown this once: it stays in {folder.password_file} "
            f"(mode 600), which later starts and {folder.credentials} read it from"
        )
    else:
        typer.echo(f"# the same lines are in {folder.credentials} (`source` it)")
    typer.echo(f"# tune.storage for a shared Optuna study: {storage_url(started.pg_port)}")
