"""Promotion and rollback with each of their registry calls failing in turn.

A fault injector wraps the real MlflowClient (the SQLite store behind it is real) and makes its
N-th call raise, as a server error would; N runs over every call the command makes, the store
restored in between, until the command runs clean. After every failure the registry is as it
was, or its alias, history and gate tags agree; the user gets one ``error:`` line.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
from typer.testing import CliRunner

from sluice.cli import EXIT_REFUSED, app
from sluice.tracking import lock
from sluice.tracking.claims import LIVE
from sluice.tracking.history import LEGACY_PREFIX, MOVE_PREFIX
from sluice.tracking.lock import CLAIM_PREFIX, registry_lock

from .conftest import VERSION, to_old_format

REAL_CLIENT = mlflow.MlflowClient


@dataclass
class Faults:
    """Counts the calls made through ``mlflow.MlflowClient()`` and fails those ``failing`` picks."""

    failing: Callable[[int], bool] = lambda n: False
    calls: list[str] = field(default_factory=list)

    def client(self, *args, **kwargs):
        return FaultyClient(REAL_CLIENT(*args, **kwargs), self)

    def call(self, name: str, method, *args, **kwargs):
        self.calls.append(name)
        if self.failing(len(self.calls)):
            raise MlflowException(
                f"injected fault in {name} (call {len(self.calls)})", error_code=INTERNAL_ERROR
            )
        return method(*args, **kwargs)


class FaultyClient:
    """The real client, each public method going through :meth:`Faults.call`."""

    def __init__(self, client, faults: Faults) -> None:
        self._client, self._faults = client, faults

    def __getattr__(self, name: str):
        value = getattr(self._client, name)
        if name.startswith("_") or not callable(value):
            return value
        return lambda *args, **kwargs: self._faults.call(name, value, *args, **kwargs)


@pytest.fixture
def faults(monkeypatch) -> Faults:
    """Every ``mlflow.MlflowClient()`` goes through the injector; no lease renewal meanwhile
    (its calls would come at times of their own)."""
    injector = Faults()
    monkeypatch.setattr(mlflow, "MlflowClient", injector.client)
    monkeypatch.setattr(lock, "RENEW_EVERY_S", 3600.0)
    return injector


def snapshot(name: str) -> dict:
    """Aliases, model tags (lock claims aside), the model's description and every version's
    tags."""
    client = REAL_CLIENT()
    model = client.get_registered_model(name)
    tags = {k: v for k, v in model.tags.items() if not k.startswith(CLAIM_PREFIX)}
    found = client.search_model_versions(f"name='{name}'")
    versions = {str(v.version): dict(v.tags) for v in found}
    aliases = {alias: str(version) for alias, version in model.aliases.items()}
    about = model.description or ""
    return {"aliases": aliases, "tags": tags, "description": about, "versions": versions}


def history_of(state: dict) -> list[dict]:
    """The entries a snapshot holds (on versions, and any old-format ones), oldest first."""
    found = {int(k.rsplit(".", 1)[1]): v for k, v in state["tags"].items() if _entry(k)}
    for tags in state["versions"].values():
        found |= {int(k.rsplit(".", 1)[1]): v for k, v in tags.items() if _entry(k)}
    return [json.loads(found[seq]) for seq in sorted(found)]


def _entry(key: str) -> bool:
    return key.startswith((MOVE_PREFIX, LEGACY_PREFIX))


ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def timeless(state: dict) -> dict:
    """``state`` without the times that differ between two runs of one command."""

    def untimed(tags: dict) -> dict:
        return {
            k: json.dumps({**json.loads(v), "time": None}) if _entry(k) else v
            for k, v in tags.items()
            if k != "sluice.promoted_at"
        }

    versions = {v: untimed(t) for v, t in state["versions"].items()}
    about = ISO_TIME.sub("TIME", state["description"])
    return {**state, "tags": untimed(state["tags"]), "description": about, "versions": versions}


def copy_db(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


@dataclass
class Failure:
    n: int
    call: str
    exit_code: int
    stderr: str
    after: dict


def each_call_failing(project, faults: Faults, *args: str) -> tuple[list[Failure], object]:
    """Run ``sluice <args>`` with call 1, 2, ... failing, the store restored before each run,
    until a run makes fewer calls than the one to fail; return the failures and that run."""
    db, saved = project.root / "mlflow.db", project.root / "saved.db"
    copy_db(db, saved)
    failures = []
    for n in itertools.count(1):
        copy_db(saved, db)
        faults.calls.clear()
        faults.failing = lambda call, n=n: call == n
        result = CliRunner().invoke(app, list(args))
        faults.failing = lambda call: False
        assert not LIVE, "a lock is still in use after the command"
        if len(faults.calls) < n:
            return failures, result
        failures.append(Failure(n, faults.calls[n - 1], result.exit_code, result.stderr,
                                snapshot(project.name)))  # fmt: skip


def assert_one_line_error(failure: Failure) -> None:
    assert failure.exit_code == 1, failure
    lines = failure.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in failure.stderr, failure
    assert "injected fault" in errors[0] and "nothing was changed" in errors[0], failure


def assert_lock_free(name: str) -> None:
    with registry_lock(name, timeout_s=5):
        pass


def promote_and_check(project, *args: str) -> None:
    result = CliRunner().invoke(app, ["promote", *args])
    assert result.exit_code == 0, result.output


def test_each_failing_call_of_a_promotion_leaves_the_registry_consistent(project, faults):
    promote_and_check(project, "--version", VERSION["weak"], "--force")
    before = snapshot(project.name)
    failures, clean = each_call_failing(project, faults, "promote")
    assert clean.exit_code == 0, clean.output
    moved = snapshot(project.name)
    assert moved["aliases"]["champion"] == VERSION["good"]
    assert {"set_registered_model_alias", "set_model_version_tag"} <= {f.call for f in failures}
    for failure in failures:
        if failure.after == before:  # nothing changed: the user is told so, in one line
            assert_one_line_error(failure)
        else:  # everything changed: only the lock's release failed, after the move
            assert failure.exit_code == 0 and timeless(failure.after) == timeless(moved), failure
    (entry,) = history_of(moved)[len(history_of(before)) :]
    assert (entry["action"], entry["from"], entry["to"]) == ("promote", "1", VERSION["good"])
    assert not [k for k in moved["tags"] if k.startswith(LEGACY_PREFIX)]
    assert f"| {entry['seq']} | {entry['time']} | champion | promote |" in moved["description"]
    tags = moved["versions"][VERSION["good"]]
    assert tags["sluice.gate.history_seq"] == str(entry["seq"])
    assert tags["sluice.gate.passed"] == "true" and tags["sluice.promoted_at"] == entry["time"]
    assert_lock_free(project.name)
    assert CliRunner().invoke(app, ["rollback"]).exit_code == 0  # the move can be undone
    assert snapshot(project.name)["aliases"]["champion"] == VERSION["weak"]


def test_each_failing_call_of_a_refused_promotion_records_all_or_nothing(project, faults):
    promote_and_check(project)  # good is the champion; weak will be refused
    before = snapshot(project.name)
    failures, clean = each_call_failing(project, faults, "promote", "--version", VERSION["weak"])
    assert clean.exit_code == EXIT_REFUSED, clean.output
    refused = snapshot(project.name)
    (entry,) = history_of(refused)[len(history_of(before)) :]
    assert entry["action"] == "refused" and entry["moved"] is False
    assert refused["versions"][VERSION["weak"]]["sluice.gate.history_seq"] == str(entry["seq"])
    for failure in failures:
        if failure.after == before:
            assert_one_line_error(failure)
        else:
            assert failure.exit_code == EXIT_REFUSED, failure
            assert timeless(failure.after) == timeless(refused), failure
    assert refused["aliases"] == before["aliases"]


def test_each_failing_call_of_a_rollback_leaves_the_registry_consistent(project, faults):
    promote_and_check(project, "--version", VERSION["weak"], "--force")
    promote_and_check(project)
    before = snapshot(project.name)
    failures, clean = each_call_failing(project, faults, "rollback", "--reason", "canary")
    assert clean.exit_code == 0, clean.output
    rolled = snapshot(project.name)
    assert rolled["aliases"]["champion"] == VERSION["weak"]
    (entry,) = history_of(rolled)[len(history_of(before)) :]
    assert entry["action"] == "rollback" and entry["reason"] == "canary"
    assert rolled["versions"][VERSION["good"]]["sluice.rolled_back_by"] == str(entry["seq"])
    assert "set_registered_model_alias" in {f.call for f in failures}
    for failure in failures:
        if failure.after == before:
            assert_one_line_error(failure)
        else:
            assert failure.exit_code == 0 and timeless(failure.after) == timeless(rolled), failure


def test_a_failed_undo_is_named_in_the_one_line(project, faults):
    promote_and_check(project, "--version", VERSION["weak"], "--force")
    faults.calls.clear()
    promote_and_check(project, "--version", VERSION["good2"], "--force")
    alias_call = faults.calls.index("set_registered_model_alias") + 1
    CliRunner().invoke(app, ["rollback"])  # champion back to weak
    before = snapshot(project.name)
    faults.calls.clear()
    faults.failing = lambda call: call >= alias_call  # the move and everything after it
    result = CliRunner().invoke(app, ["promote", "--version", VERSION["good2"], "--force"])
    faults.failing = lambda call: False
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "failed at alias champion -> version 3" in line
    assert "undoing its earlier writes failed too" in line and "history entry #" in line
    after = snapshot(project.name)
    assert after["aliases"] == before["aliases"]  # the alias never moved
    assert len(history_of(after)) == len(history_of(before)) + 1  # what the line names


def test_each_failing_call_of_a_migrating_promotion_undoes_the_migration_too(project, faults):
    promote_and_check(project, "--version", VERSION["weak"], "--force")
    to_old_format(project.name)  # as an older sluice left it: entries as model tags
    before = snapshot(project.name)
    failures, clean = each_call_failing(project, faults, "promote")
    assert clean.exit_code == 0, clean.output
    moved = snapshot(project.name)
    assert not [k for k in moved["tags"] if k.startswith(LEGACY_PREFIX)]
    assert history_of(moved)[:-1] == history_of(before)
    said = " ".join(f.stderr for f in failures)
    assert "failed at moving entry #1" in said and "failed at old-format history tag" in said
    for failure in failures:
        if failure.after == before:
            assert_one_line_error(failure)
        else:
            assert failure.exit_code == 0 and timeless(failure.after) == timeless(moved), failure
