"""The registry lock and alias moves on the real team server (PostgreSQL, basic auth): a user who
may only read a model cannot take its lock, so cannot block anyone; a user who may edit it breaks
the lock of another user's dead process at once; a reason the server cannot keep moves nothing."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

from .conftest import lines

pytestmark = pytest.mark.slow

HOLDER = ROOT / "tests" / "lifecycle" / "lock_holder.py"


@dataclass(frozen=True)
class Team:
    """A registered model with two versions, and one login per role."""

    model: str
    versions: list[str]
    logins: dict[str, tuple[str, str]]  # role -> (user, password)


@pytest.fixture
def team(team_server, login) -> Team:
    from mlflow.server.auth.client import AuthServiceClient

    admin, tag = login(team_server), secrets.token_hex(3)
    run = admin.create_run(admin.create_experiment(f"lock-{tag}")).info.run_id
    model = admin.create_registered_model(f"lock-{tag}").name
    source = f"runs:/{run}/model"
    versions = [admin.create_model_version(model, source, run).version for _ in range(2)]
    auth, logins = AuthServiceClient(team_server.uri), {}
    for role, permission in (("alice", "EDIT"), ("bob", "EDIT"), ("viewer", "READ")):
        user, password = f"{role}-{tag}", secrets.token_urlsafe(16)
        auth.create_user(user, password)
        auth.grant_user_permission(user, "registered_model", model, permission)
        logins[role] = (user, password)
    return Team(model, [str(v) for v in versions], logins)


def holder(team_server, team: Team, role: str, folder: Path, *args: str) -> subprocess.Popen:
    """lock_holder.py on ``team.model``, logged in as ``role``."""
    folder.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env = team_server.env({**base, "DVC_ROOT": str(folder)}, *team.logins[role])
    return subprocess.Popen(
        [sys.executable, str(HOLDER), team.model, str(folder), *args],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_held(proc: subprocess.Popen, folder: Path, timeout_s: float = 60) -> None:
    """Return once the holder holds the lock (fails if it exits or times out first)."""
    started = time.monotonic()
    while not (folder / "held").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - started < timeout_s, "no lock"
        time.sleep(0.05)


def claims(client, model: str) -> list[str]:
    return [k for k in client.get_registered_model(model).tags if k.startswith("sluice.lock.")]


def test_a_reader_cannot_take_the_lock_and_so_blocks_nobody(team_server, login, team, tmp_path):
    admin = login(team_server)
    viewer = holder(team_server, team, "viewer", tmp_path / "viewer")
    try:
        _, err = viewer.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        (tmp_path / "viewer" / "release").touch()
        viewer.communicate(timeout=60)
        pytest.fail("a user with READ permission took the registry lock")
    assert viewer.returncode == 1 and "Traceback" not in err
    (line,) = [x for x in lines(err) if x.startswith("error:")]
    assert f"denied user '{team.logins['viewer'][0]}' permission (HTTP 403)" in line
    assert not claims(admin, team.model)
    # Alice asks for 10 s: had the reader left a claim, she would give up and exit first.
    alice = holder(team_server, team, "alice", tmp_path / "alice", "--timeout", "10")
    wait_held(alice, tmp_path / "alice")
    (tmp_path / "alice" / "release").touch()
    assert alice.communicate(timeout=60)[0].startswith("still held")
    assert not claims(admin, team.model)


def test_an_editor_breaks_the_lock_of_another_users_dead_process(
    team_server, login, team, tmp_path
):
    admin = login(team_server)
    alice = holder(team_server, team, "alice", tmp_path / "alice")
    wait_held(alice, tmp_path / "alice")
    alice.kill()  # dies holding it: its claim stays behind
    alice.wait()
    # Bob asks for 20 s, a third of the dead claim's 60-s lease: he holds the lock only if he
    # broke it; had he waited for it to lapse, he would give up and exit first.
    bob = holder(team_server, team, "bob", tmp_path / "bob", "--timeout", "20")
    wait_held(bob, tmp_path / "bob")
    (tmp_path / "bob" / "release").touch()
    out, err = bob.communicate(timeout=60)
    assert bob.returncode == 0 and out.startswith("still held"), err
    assert not claims(admin, team.model)


def test_a_reason_the_server_cannot_keep_moves_nothing(team_server, login, team):
    from mlflow.exceptions import MlflowException

    from sluice.errors import SluiceError
    from sluice.tracking.history import TAG_VALUE_LIMIT
    from sluice.tracking.registry import aliases, read_history, record_alias_move

    admin = login(team_server)
    version = team.versions[0]  # entries are version tags: the limit is the server's, not a guess
    admin.set_model_version_tag(team.model, version, "probe", "x" * TAG_VALUE_LIMIT)
    with pytest.raises(MlflowException):
        admin.set_model_version_tag(team.model, version, "probe", "x" * (TAG_VALUE_LIMIT + 1))
    admin.delete_model_version_tag(team.model, version, "probe")
    record_alias_move(team.model, "champion", version, reason="first")
    before = aliases(team.model), read_history(team.model)
    with pytest.raises(SluiceError, match="the reason is too long"):
        record_alias_move(team.model, "champion", team.versions[1], reason="r" * TAG_VALUE_LIMIT)
    assert (aliases(team.model), read_history(team.model)) == before
    assert not claims(admin, team.model)


def test_the_history_table_fits_what_postgresql_keeps(team_server, login, team):
    from mlflow.exceptions import MlflowException

    from sluice.tracking.history import LEGACY_PREFIX
    from sluice.tracking.history_table import DESCRIPTION_LIMIT, HEADING, MAX_ROWS, table_seqs
    from sluice.tracking.registry import read_history, record_alias_move

    admin = login(team_server)
    with pytest.raises(MlflowException):  # the limit is PostgreSQL's column, not a guess
        admin.update_registered_model(team.model, "x" * (DESCRIPTION_LIMIT + 1))
    admin.update_registered_model(team.model, "Kept by the team.")
    moves = MAX_ROWS + 5
    for i in range(moves):
        record_alias_move(team.model, "canary", team.versions[i % 2], reason="r" * 500)
    model = admin.get_registered_model(team.model)
    assert model.description.startswith(f"Kept by the team.\n\n{HEADING}\n")
    assert len(model.description) <= DESCRIPTION_LIMIT
    assert table_seqs(model.description)[0] == moves == len(read_history(team.model))
    assert not [k for k in model.tags if k.startswith((LEGACY_PREFIX, "sluice.lock."))]
