"""The state folder of one server: what lies where, whose it is, and its private files.

``server.json`` (pids and ports), ``secrets.json`` (the generated passwords), the database
cluster in ``pg/``, logs, and the files clients use: ``admin.password``, ``optuna.pgpass`` and
``credentials.env`` (the ``export`` lines). Every file that holds a password is 0600.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from sluice.errors import SluiceError
from sluice.server.pgcluster import Cluster
from sluice.server.private import write_private

MARKER = ".sluice-server"  # written into a folder `sluice server start` created
OPTUNA = "optuna"  # the shared tuning studies' database, and the only role that may use it
SECRET_KEYS = ("db", "admin", "flask", OPTUNA)  # PostgreSQL's, the admin's, Flask's CSRF key
STATE_KEYS = {"pid": int, "port": int, "uri": str, "pg_port": int}


class ServerFolder:
    """The files of one server under ``root`` (created on first start)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.cluster = Cluster(self.root / "pg")
        self.marker = self.root / MARKER
        self.secrets_file = self.root / "secrets.json"
        self.state_file = self.root / "server.json"
        self.auth_ini = self.root / "basic_auth.ini"
        self.credentials = self.root / "credentials.env"
        self.password_file = self.root / "admin.password"
        self.passfile = self.root / "pgpass"  # the server's own login to PostgreSQL
        self.optuna_passfile = self.root / "optuna.pgpass"  # shared tuning's, for clients
        self.log = self.root / "mlflow.log"
        self.artifacts = self.root / "artifacts"

    def claim(self) -> None:
        """Create the folder with its marker, or check that an existing one is a server's.

        Raises:
            SluiceError: the folder exists and `sluice server start` did not make it (left as
                it is: no permission or file of it is changed).
        """
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700)
            self.marker.write_text("made by `sluice server start`; the server's state\n")
        elif not self.marker.is_file():
            if not self._made_before_markers():
                raise SluiceError(
                    f"{self.root} exists and was not made by `sluice server start` (no {MARKER} "
                    "in it); leave it as it is and pass a --state-dir that does not exist yet"
                )
            self.marker.write_text("made by `sluice server start`; the server's state\n")
        self.root.chmod(0o711)  # PostgreSQL's own user must reach pg/; the files stay private

    def _made_before_markers(self) -> bool:
        """A server folder from before the marker: its secrets and its database cluster."""
        return self.secrets_file.is_file() and (self.root / "pg" / "data").is_dir()

    def state(self) -> dict:
        """What the last start recorded (empty when nothing is recorded).

        Raises:
            SluiceError: ``server.json`` is damaged (truncated, edited), with what to do.
        """
        if not self.state_file.is_file():
            return {}
        state = self._read_json(self.state_file, self._state_remedy())
        wrong = [k for k, kind in STATE_KEYS.items() if not isinstance(state.get(k), kind)]
        if wrong:
            why = f"no valid {', '.join(wrong)}"
            raise SluiceError(f"{self.state_file} is damaged ({why}); {self._state_remedy()}")
        return state

    def _state_remedy(self) -> str:
        return (
            f"delete it, then `sluice server stop --state-dir {self.root}` stops what still runs "
            "from that folder, and `sluice server start` starts afresh"
        )

    def write_state(self, state: dict) -> None:
        """Record pids and ports, atomically (an interrupted write keeps the old file)."""
        write_private(self.state_file, json.dumps(state, indent=2) + "\n")

    def secrets(self) -> dict[str, str]:
        """The passwords, made on first use (a missing one is added to an older server's)."""
        kept = {}
        if self.secrets_file.is_file():
            remedy = (
                f"its passwords are lost: `sluice server stop --state-dir {self.root}`, then "
                "move the folder away and start afresh"
            )
            kept = self._read_json(self.secrets_file, remedy)
        if any(key not in kept for key in SECRET_KEYS):
            kept |= {key: secrets.token_urlsafe(24) for key in SECRET_KEYS if key not in kept}
            write_private(self.secrets_file, json.dumps(kept))
        return kept

    @staticmethod
    def _read_json(path: Path, remedy: str) -> dict:
        """A JSON object from ``path``, or one line that says it is damaged and what to do."""
        try:
            found = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SluiceError(f"{path} is damaged (not valid JSON: {exc}); {remedy}") from None
        if not isinstance(found, dict):
            raise SluiceError(f"{path} is damaged (not a JSON object); {remedy}")
        return found
