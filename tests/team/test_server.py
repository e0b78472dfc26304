"""The team tracking server (`make server`): authentication, one-line failures, the whole pipeline
and the model lifecycle against it, and many clients at once. One server for all of them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, make_project

from .conftest import free_port, http_status, lines
from .load_worker import BATCH, STEPS, VERSIONS

pytestmark = pytest.mark.slow

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
LEGACY_DEFAULT = "password1234"  # the admin password older MLflow versions shipped
WORKER = Path(__file__).with_name("load_worker.py")
CLIENTS = 8


@pytest.fixture
def admin(team_server, login):
    """An MLflow client logged in as the admin (also for sluice's own registry functions)."""
    return login(team_server)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, team_server):
    """The default pipeline (small settings), run with `dvc repro` against the server."""
    project = make_project(tmp_path_factory.mktemp("team") / "proj")
    project.env = team_server.env(project.env)
    project.run("dvc", "repro")
    return project


def test_requests_without_credentials_are_refused(team_server):
    url = team_server.uri + SEARCH
    assert http_status(url) == 401
    assert http_status(url, "admin", "not-the-password") == 401
    assert http_status(url, "admin", team_server.password) == 200


def test_the_admin_password_is_generated_not_a_default(team_server):
    password = team_server.password
    assert len(password) >= 24 and password != LEGACY_DEFAULT
    assert http_status(team_server.uri + SEARCH, "admin", LEGACY_DEFAULT) == 401
    private = ("credentials.env", "basic_auth.ini", "secrets.json", "pgpass", "optuna.pgpass")
    for name in (*private, "admin.password", "server.json"):
        assert (team_server.state_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert (team_server.state_dir / "admin.password").read_text() == password + "\n"
    assert password not in (team_server.state_dir / "credentials.env").read_text()


def test_make_server_again_is_a_noop_that_says_it_runs(team_server):
    state = team_server.state_dir / "server.json"
    pid = json.loads(state.read_text())["pid"]
    again = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "server", f"PORT={team_server.port}",
         f"SERVER_DIR={team_server.state_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"already running at {team_server.uri}" in again.stdout
    first, second = team_server.exports, replace(team_server, output=again.stdout).exports
    assert first.keys() == second.keys()
    assert {k: v for k, v in first.items() if k != "MLFLOW_TRACKING_PASSWORD"} == {
        k: v for k, v in second.items() if k != "MLFLOW_TRACKING_PASSWORD"
    }
    assert json.loads(state.read_text())["pid"] == pid


def _listen_addresses(port: int) -> set[str]:
    """The addresses something listens on at TCP ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                ipv4 = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
                found.add(ipv4 if len(address) == 8 else address)
    return found


def test_both_services_listen_on_loopback_only(team_server):
    state = json.loads((team_server.state_dir / "server.json").read_text())
    assert _listen_addresses(state["port"]) == {"127.0.0.1"}
    assert _listen_addresses(state["pg_port"]) == {"127.0.0.1"}


def test_the_pipeline_tracks_and_registers_on_the_server(pipeline, admin):
    registered = pipeline.read_json("reports/registered.json")
    experiment = admin.get_experiment_by_name("sluice")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = admin.search_runs([experiment.experiment_id])
    assert {"base", "finetuned"} <= {r.data.tags.get("sluice.role") for r in runs}
    assert {r.info.status for r in runs} == {"FINISHED"}
    name = registered["model_name"]
    versions = {v.version for v in admin.search_model_versions(f"name = '{name}'")}
    assert {str(v) for v in registered["versions"].values()} <= versions
    assert admin.get_model_version_by_alias(name, "challenger").version in versions
    # Nothing went to a local store.
    assert not (pipeline.path / "mlflow.db").exists()
    assert not (pipeline.path / "mlartifacts").exists()


def test_the_pipeline_is_one_parent_run_with_its_runs_nested(pipeline, admin):
    from sluice.tracking.grouping import EXECUTION_TAG, PARENT_TAG

    runs = admin.search_runs([admin.get_experiment_by_name("sluice").experiment_id])
    (parent,) = [
        r for r in runs if r.data.tags.get("sluice.workspace") == str(pipeline.path.resolve())
    ]
    assert EXECUTION_TAG in parent.data.tags and parent.info.status == "FINISHED"
    nested = {r.info.run_name: r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id}
    assert set(nested) == {"base", "finetuned", "logreg"}
    registered = pipeline.read_json("reports/registered.json")
    role = registered["challenger"]["role"]
    assert parent.data.metrics["test_roc_auc"] == nested[role].data.metrics["test_roc_auc"]
    for model, version in registered["versions"].items():  # versions keep their model's run
        found = admin.get_model_version(registered["model_name"], version)
        assert found.run_id == nested[model].info.run_id


def test_promote_history_and_predict_against_the_server(pipeline, admin):
    name = pipeline.read_json("reports/registered.json")["model_name"]
    promoted = pipeline.run("sluice", "promote")
    assert "promoted" in promoted.stdout
    champion = admin.get_model_version_by_alias(name, "champion")
    assert champion.version == admin.get_model_version_by_alias(name, "challenger").version
    history = json.loads(pipeline.run("sluice", "history", "--json").stdout)
    assert [(e["action"], e["to"]) for e in history if e["alias"] == "champion"] == [
        ("promote", champion.version)
    ]
    assert f"{champion.version}" in pipeline.run("sluice", "status").stdout
    # The champion's files come back through the server's artifact proxy.
    target = pipeline.read_json("reports/clean.json")["target"]
    test = pd.read_parquet(pipeline.path / "data" / "processed" / "test.parquet")
    test.drop(columns=[target]).to_csv(pipeline.path / "rows.csv", index=False)
    pipeline.run("sluice", "predict", "rows.csv", "-o", "preds.csv", "--no-progress")
    preds = pd.read_csv(pipeline.path / "preds.csv")
    assert len(preds) == len(test) and preds["predicted"].notna().all()


def _table_rows(table: str) -> dict[str, list[str]]:
    """The cells of each row of `sluice status`'s table, by version (wrapped lines left out)."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines()]
    return {cells[0]: cells for cells in rows if cells and cells[0].isdigit()}


def test_status_json_holds_what_status_shows(pipeline, admin):
    from sluice.tracking.registry import aliases

    name = pipeline.read_json("reports/registered.json")["model_name"]
    found = json.loads(pipeline.run("sluice", "status", "--json").stdout)
    rows = _table_rows(pipeline.run("sluice", "status").stdout)
    assert found["model"] == name and found["aliases"] == aliases(name)
    registered = admin.search_model_versions(f"name = '{name}'")
    expected = sorted((v.version for v in registered), key=int, reverse=True)
    assert [e["version"] for e in found["versions"]] == expected == list(rows)
    for entry in found["versions"]:
        version, held, role, _, roc_auc = rows[entry["version"]][:5]
        assert held == (", ".join(entry["aliases"]) or "-") and role == entry["role"]
        assert roc_auc == f"{entry['metrics']['roc_auc']:.4f}"
        assert entry["run_id"].startswith(rows[version][-1])


def test_a_user_with_read_permission_cannot_promote(pipeline, team_server, admin):
    from mlflow.server.auth.client import AuthServiceClient

    from sluice.tracking.registry import aliases, read_history

    name = pipeline.read_json("reports/registered.json")["model_name"]
    user, password = f"viewer-{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    auth = AuthServiceClient(team_server.uri)
    auth.create_user(user, password)
    auth.grant_user_permission(user, "registered_model", name, "READ")
    before, history = aliases(name), read_history(name)
    versions = sorted(int(v.version) for v in admin.search_model_versions(f"name = '{name}'"))
    candidate = str(next(v for v in versions if str(v) != before.get("champion")))
    viewer = replace(pipeline, env=team_server.env(pipeline.env, user, password))
    assert viewer.run("sluice", "status").returncode == 0  # READ is enough to look
    result = viewer.run(
        "sluice", "promote", "--version", candidate, "--force", "--reason", "r", check=False
    )
    assert result.returncode == 1
    (line,) = [x for x in lines(result.stderr) if x.startswith("error:")]
    assert f"denied user '{user}' permission (HTTP 403)" in line
    assert "Traceback" not in result.stderr
    assert aliases(name) == before and read_history(name) == history
    assert not admin.search_registered_models(f"name = '{name}.lock'")  # the lock was released


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_wrong_password_or_a_server_down_stops_a_stage_before_training(
    pipeline, team_server, admin
):
    experiment_id = admin.get_experiment_by_name("sluice").experiment_id
    runs_before = len(admin.search_runs([experiment_id]))
    outputs = _snapshot(pipeline.path / "models") | _snapshot(pipeline.path / "reports")
    cases = {
        "rejected the password of user 'admin' (HTTP 401)": team_server.env(
            pipeline.env, "admin", "not-the-password"
        ),
        "is not reachable": {
            **pipeline.env,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        },
    }
    for expected, env in cases.items():
        result = replace(pipeline, env=env).stage("train", check=False)
        assert result.returncode == 1
        (line,) = [x for x in lines(result.stderr) if x.startswith("error:")]
        assert line.startswith("error: MLflow tracking server http://127.0.0.1:")
        assert expected in line and "Traceback" not in result.stderr
    assert _snapshot(pipeline.path / "models") | _snapshot(pipeline.path / "reports") == outputs
    assert len(admin.search_runs([experiment_id])) == runs_before


def _start_clients(team_server, experiment_id: str, model: str, folder: Path) -> list:
    """CLIENTS worker processes, released together once all have imported MLflow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env = team_server.env({**env, "DVC_ROOT": str(folder), "OMP_NUM_THREADS": "1"})
    go = folder / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), experiment_id, model, str(i), str(go)],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(CLIENTS)
    ]
    deadline = time.monotonic() + 180
    while len(list(folder.glob("ready-*"))) < CLIENTS and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    go.touch()
    return procs


def test_eight_clients_at_once_lose_nothing(team_server, admin, tmp_path):
    from sluice.tracking.registry import read_history

    tag = secrets.token_hex(3)
    experiment_id = admin.create_experiment(f"load-{tag}")
    model = admin.create_registered_model(f"load-{tag}").name
    procs = _start_clients(team_server, experiment_id, model, tmp_path)
    done = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * CLIENTS, [err[-2000:] for _, err in done]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in done]
    runs = admin.search_runs([experiment_id])
    assert {r.info.run_id for r in runs} == {r["run_id"] for r in reports}
    for run in runs:
        assert len(admin.get_metric_history(run.info.run_id, "loss")) == STEPS
        assert len(admin.get_metric_history(run.info.run_id, "acc")) == BATCH
    registered = sorted(int(v.version) for v in admin.search_model_versions(f"name = '{model}'"))
    assert registered == list(range(1, CLIENTS * VERSIONS + 1))
    assert sorted(int(v) for r in reports for v in r["versions"]) == registered
    entries = read_history(model)  # every alias move went through the registry lock
    assert sorted(e["seq"] for e in entries) == list(range(1, CLIENTS + 1))
    assert not admin.search_registered_models(f"name = '{model}.lock'")
