"""The server's processes (found and checked with psutil) and its TCP ports on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import psutil

from sluice.errors import SluiceError


def is_mlflow_server(pid: int, root: Path) -> bool:
    """Whether ``pid`` is a live ``mlflow server`` started from folder ``root``.

    A recycled pid (another program, or another folder's server) and a zombie are not.
    """
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            cmdline, cwd = proc.cmdline(), proc.cwd()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "mlflow" in cmdline and "server" in cmdline and Path(cwd) == root


def find_mlflow_server(root: Path) -> int | None:
    """The pid of the ``mlflow server`` that leads its process group in ``root``, if any.

    For a folder whose ``server.json`` is gone: the server runs with ``root`` as its working
    directory, in a session of its own.
    """
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid and is_mlflow_server(proc.pid, root):
                return proc.pid
    return None


def stop_process_group(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM the group that ``pid`` leads (the server, uvicorn and its workers); SIGKILL
    whatever of it still runs after ``timeout_s``."""
    try:
        leader = psutil.Process(pid)
        procs = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in _alive(procs):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes that still run (a zombie has finished: only its parent must reap it)."""
    left = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
    return left


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether nothing accepts connections at ``port`` on 127.0.0.1."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def require_free_port(port: int) -> None:
    """Raise a SluiceError that suggests another port when ``port`` is taken."""
    if not port_free(port):
        raise SluiceError(
            f"port {port} on 127.0.0.1 is taken by another program; pick another one "
            f"(--port {port + 50}, or make server PORT={port + 50})"
        )
