"""Concurrent promotions on one SQLite store, and the registry lock that keeps them apart: two
real `sluice promote` processes at once stay consistent; the lock has one holder at a time."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from sluice.cli import EXIT_REFUSED, app
from sluice.errors import SluiceError
from sluice.tracking.lock import registry_lock
from sluice.tracking.registry import aliases, read_history

from .conftest import BIN, VERSION


@pytest.mark.slow
def test_concurrent_promotions_leave_one_consistent_champion(project):
    assert (
        CliRunner().invoke(app, ["promote", "--version", VERSION["weak"], "--force"]).exit_code == 0
    )
    # Both candidates beat the weak champion; only the lock makes the second one face the first.
    procs = [
        subprocess.Popen(
            [str(BIN / "sluice"), "promote", "--version", VERSION[role]],
            cwd=project.root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("good", "good2")
    ]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    codes = [code for code, _, _ in results]
    assert set(codes) <= {0, EXIT_REFUSED}, results
    assert 0 in codes, results

    history = read_history(project.name)
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    champion_entries = [e for e in history if e["alias"] == "champion"]
    assert len(champion_entries) == 1 + len(procs)  # the forced one + one per process
    moves = [e for e in champion_entries if e.get("moved", True)]
    assert len(moves) == 1 + codes.count(0)
    for before, after in zip(moves, moves[1:], strict=False):
        assert after["from"] == before["to"]  # each gate faced the champion of its moment
    assert aliases(project.name)["champion"] == moves[-1]["to"]
    client = mlflow.MlflowClient()
    for entry in champion_entries[1:]:
        verdict = entry["verdict"]
        assert verdict["mode"] == "compare" and verdict["passed"] is entry.get("moved", True)
        faced = client.get_model_version(project.name, entry["from"]).tags["test_roc_auc"]
        assert verdict["champion"] == pytest.approx(float(faced), abs=1e-6)
    assert not client.search_registered_models(f"name = '{project.name}.lock'")


# The registry lock: one holder at a time, dead holders broken at once, live ones never.

HOLDER = Path(__file__).with_name("lock_holder.py")


def start_holder(project, folder: Path, *args: str) -> subprocess.Popen:
    """A real process that takes the lock (lock_holder.py); returns once it holds it."""
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(HOLDER), project.name, str(folder), *args],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (folder / "held").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the holder did not take the lock"
        time.sleep(0.05)
    return proc


def let_go(proc: subprocess.Popen, folder: Path) -> str:
    """Tell a holder to release the lock; return what it printed."""
    (folder / "release").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_a_holder_killed_on_this_host_loses_the_lock_at_once(project, tmp_path):
    holder = start_holder(project, tmp_path / "a")
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with registry_lock(project.name, timeout_s=20):
        assert time.monotonic() - started < 15  # not the 60-s lease
    result = CliRunner().invoke(app, ["promote"])
    assert result.exit_code == 0, result.output


def test_a_live_holder_keeps_the_lock_past_its_lease_and_is_named(project, tmp_path):
    # On another host only the lease shows it is alive: 5 s, renewed every 0.3 s. The holder
    # trusts it until 5/3 s before its end, so a renewal may lag 3 s on a loaded machine; the
    # waiter gives up after 7 s, past the lease, so only the renewals keep the claim alive.
    folder = tmp_path / "a"
    holder = start_holder(project, folder, "--host", "elsewhere", "--lease", "5", "--renew", "0.3")
    with pytest.raises(SluiceError) as err, registry_lock(project.name, timeout_s=7):
        pass
    message = str(err.value)
    assert f"pid {holder.pid} on host elsewhere, holding it since 20" in message
    assert f"user {getpass.getuser()}" in message and "\n" not in message
    assert let_go(holder, folder).startswith("still held")
    with registry_lock(project.name, timeout_s=5):
        pass


def test_a_lapsed_lease_is_broken_and_its_holder_cannot_release_the_next_lock(project, tmp_path):
    # A holder on another host stops renewing (frozen, or cut off from the store) ...
    folder = tmp_path / "a"
    holder = start_holder(project, folder, "--host", "elsewhere", "--lease", "1", "--renew", "60")
    time.sleep(1.5)
    started = time.monotonic()
    with registry_lock(project.name, timeout_s=20):  # ... so its lock is broken at once
        assert time.monotonic() - started < 15
        assert let_go(holder, folder).startswith("lost: lost the registry lock")
        # Its release removed its own claim only: this process still holds the lock.
        mine = f"pid {os.getpid()} on host"
        with pytest.raises(SluiceError, match=mine), registry_lock(project.name, timeout_s=1):
            pass
    tags = mlflow.MlflowClient().get_registered_model(project.name).tags
    assert not [k for k in tags if k.startswith("sluice.lock.")]


@pytest.mark.slow
def test_four_processes_take_turns(project, tmp_path):
    folder, rounds = tmp_path / "shared", 3
    folder.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(HOLDER), project.name, str(folder), "--rounds", str(rounds)],
            cwd=project.root,
            env=project.env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert int((folder / "count").read_text()) == 4 * rounds
