"""A private PostgreSQL cluster in one folder, listening on 127.0.0.1 only (`sluice server`).

``initdb`` refuses to run as root, so when root starts it, the cluster belongs to the system's
``postgres`` user and every PostgreSQL program runs through ``runuser -u postgres``; a normal
user owns it directly. Clients log in as ``sluice`` with a password (SCRAM), read from a
``pgpass`` file so that it never appears on a command line.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from sluice.errors import SluiceError
from sluice.server.private import write_private

USER = "sluice"  # the cluster's superuser, owner of the databases
SYSTEM_USER = "postgres"  # who runs the cluster when root starts it


def bin_dir() -> Path:
    """PostgreSQL's server programs: ``SLUICE_PG_BIN``, Debian's newest, or ``initdb`` on PATH."""
    if os.environ.get("SLUICE_PG_BIN"):
        return Path(os.environ["SLUICE_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise SluiceError(
        "PostgreSQL's server programs (initdb, pg_ctl) were not found; install them "
        "(apt-get install postgresql) or set SLUICE_PG_BIN to their folder"
    )


class Cluster:
    """The cluster whose files live in ``root``: ``data/`` and ``postgres.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def init(self, password: str) -> None:
        """``initdb`` with password logins only, on 127.0.0.1 only, no Unix socket."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        pwfile = self.root / "initdb.pw"
        write_private(pwfile, password + "\n")
        self._give_away(self.root, pwfile)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# sluice: loopback only; enough connections for a few server workers\n"
                "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                "max_connections = 300\n"
            )

    def start(self, port: int) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"-p {port}", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        if not self.initialised():
            return False
        done = subprocess.run(
            [*self._as_owner(), str(bin_dir() / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def _run(self, program: str, *args: str) -> None:
        cmd = [*self._as_owner(), str(bin_dir() / program), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise SluiceError(
                f"PostgreSQL's {program} failed in {self.root} "
                f"({lines[-1] if lines else f'exit code {done.returncode}'}); see {self.log}"
            )

    def _as_owner(self) -> list[str]:
        """Run as the system's ``postgres`` user when we are root (initdb refuses root)."""
        return ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []

    def _give_away(self, *paths: Path) -> None:
        """As root: hand the cluster's folder to ``postgres`` and check that it can get there."""
        if os.geteuid() != 0:
            return
        try:
            owner = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise SluiceError(
                f"running as root, but there is no '{SYSTEM_USER}' user to own the database "
                "(initdb refuses root); install PostgreSQL from the system's packages or run "
                "as a normal user"
            ) from None
        for path in paths:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        probe = subprocess.run(
            [*self._as_owner(), "test", "-w", str(self.root)], capture_output=True, check=False
        )
        if probe.returncode != 0:
            raise SluiceError(
                f"the '{SYSTEM_USER}' user cannot reach {self.root} (a parent folder is not "
                "searchable by others); chmod o+x the parent folders or choose another folder"
            )


def write_passfile(path: Path, password: str, user: str = USER, database: str = "*") -> Path:
    """A libpq password file for clients of the cluster (any port: it changes between starts).

    Always 0600, also where the file existed with wider permissions: libpq ignores a password
    file that others may read.
    """
    write_private(path, f"127.0.0.1:*:{database}:{user}:{password}\n")
    return path


def create_database(port: int, password: str, name: str, owner: str | None = None) -> None:
    """Create database ``name`` unless it exists (CREATE DATABASE cannot run in a transaction).

    ``owner``: a login role that owns it; no other role but the superuser may connect to it.
    """
    from psycopg import sql

    with _admin(port, password) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if owner:
                query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            conn.execute(query)
        # No other role may even connect (the superuser still can).
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))


def create_role(port: int, password: str, role: str, role_password: str) -> None:
    """Create (or update the password of) a login role without any other privilege."""
    from psycopg import sql

    with _admin(port, password) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = sql.SQL("ALTER" if exists else "CREATE")
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                verb, sql.Identifier(role), sql.Literal(role_password)
            )
        )


def _admin(port: int, password: str):
    """A connection to the cluster as its superuser (autocommit), as a context manager."""
    import psycopg

    try:
        return psycopg.connect(
            host="127.0.0.1", port=port, user=USER, password=password, dbname="postgres",
            autocommit=True, connect_timeout=10,
        )  # fmt: skip
    except psycopg.OperationalError as exc:
        raise SluiceError(
            f"cannot log in to PostgreSQL on 127.0.0.1:{port} ({str(exc).strip()}); "
            "stop it and delete the server folder to start afresh"
        ) from None
