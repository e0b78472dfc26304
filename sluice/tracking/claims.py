"""A claim on a registry lock (:mod:`sluice.tracking.lock`): who holds or waits for it, until when
its lease runs, and whether the process behind it is still there.

A claim is dead when its lease has run out, or, on this host, when its process is gone: psutil
looks the pid up, and the process's start time tells a reused pid from the one that claimed. A
host is its name and its boot time, so the same name after a reboot is another host. Inside
this process, a claim is alive only while the lock that wrote it is in use (``LIVE``), so a
claim left behind by a failed release here does not block this process's next lock.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

LIVE: set[str] = set()  # tokens of the claims this process has written and still uses


@dataclass(frozen=True)
class Claim:
    """One process's claim on the lock (the JSON value of its tag)."""

    token: str
    host: str
    boot: int  # the host's boot time
    pid: int
    started: float  # the process's start time
    user: str
    since: str
    expires: float  # Unix time; the holder renews it
    ticket: int = 0
    choosing: bool = True
    held: bool = False

    def describe(self) -> str:
        """``user alice, pid 42 on host ws-3, holding it since 2026-12-05T10:02:11+00:00``."""
        state = "holding it" if self.held else "waiting for it"
        return f"user {self.user}, pid {self.pid} on host {self.host}, {state} since {self.since}"


def new_claim(token: str) -> Claim:
    """A claim of this process (not yet choosing a ticket, lease not yet set)."""
    import psutil

    pid = os.getpid()
    return Claim(
        token=token,
        host=socket.gethostname(),
        boot=_boot_time(),
        pid=pid,
        started=psutil.Process(pid).create_time(),
        user=current_user(),
        since=now_iso(),
        expires=0.0,
    )


def parse_claim(value: str) -> Claim | None:
    """The claim a tag value holds (None when it holds none)."""
    try:
        return Claim(**json.loads(value))
    except (TypeError, ValueError):
        return None


def is_dead(claim: Claim, now: float) -> bool:
    """Lease run out, or (on this host) the process is gone or no longer uses the claim."""
    if now > claim.expires:
        return True
    if (claim.host, claim.boot) != (socket.gethostname(), _boot_time()):
        return False
    if claim.pid == os.getpid():
        return claim.token not in LIVE
    return _process_gone(claim.pid, claim.started)


def _process_gone(pid: int, started: float) -> bool:
    """No process ``pid`` here, or a zombie, or another process that reuses the pid."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - started) > 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _boot_time() -> int:
    import psutil

    return int(psutil.boot_time())


def now_iso() -> str:
    """The time now, UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_user() -> str:
    """The OS user, and the tracking server login when there is another one."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    login = os.environ.get("MLFLOW_TRACKING_USERNAME")
    return f"{user} (MLflow login {login})" if login and login != user else user
