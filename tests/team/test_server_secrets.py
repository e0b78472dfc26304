"""The team server's secrets: the admin password printed once, password files that stay 0600,
and a tuning storage URL without a password. On the session's server, started again (a no-op)."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

import pytest

from .conftest import sluice_server

pytestmark = pytest.mark.slow


def _shell(script: str) -> str:
    """What bash prints for ``script``: export lines evaluated as a user's shell would."""
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_admin_password_is_printed_on_the_first_start_only(team_server):
    assert f"export MLFLOW_TRACKING_PASSWORD={team_server.password}\n" in team_server.output
    again = server_start(team_server)
    assert again.returncode == 0, again.stderr
    assert team_server.password not in again.stdout + again.stderr
    password_file = team_server.state_dir / "admin.password"
    line = f'export MLFLOW_TRACKING_PASSWORD="$(cat {password_file})"'
    assert line in again.stdout.splitlines()
    # Both the printed lines and credentials.env give a shell the password from its file.
    printed = "\n".join(x for x in again.stdout.splitlines() if x.startswith("export "))
    assert _shell(f"{printed}\necho $MLFLOW_TRACKING_PASSWORD") == team_server.password
    sourced = f"source {team_server.state_dir / 'credentials.env'}; echo $MLFLOW_TRACKING_PASSWORD"
    assert _shell(sourced) == team_server.password


def test_the_libpq_password_file_is_0600_even_when_it_was_0644(team_server):
    import psycopg

    passfile = team_server.state_dir / "optuna.pgpass"
    passfile.chmod(0o644)
    again = server_start(team_server)
    assert again.returncode == 0, again.stderr
    assert passfile.stat().st_mode & 0o777 == 0o600
    # The storage URL carries no password: libpq reads it from PGPASSFILE.
    url = urlsplit(team_server.storage)
    assert url.password is None and team_server.exports["PGPASSFILE"] == str(passfile)
    conninfo = f"host={url.hostname} port={url.port} user={url.username} dbname={url.path[1:]}"
    with psycopg.connect(conninfo, passfile=str(passfile), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("optuna",)


def server_start(team_server) -> subprocess.CompletedProcess:
    """``sluice server start`` again on the running session server (a no-op)."""
    return sluice_server(
        "start", "--state-dir", str(team_server.state_dir), "--port", str(team_server.port)
    )
