"""Shared fixtures: a throwaway copy of the project (git + DVC) with its own MLflow store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = (
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvcignore",
    ".gitignore",
    "data/raw/.gitkeep",
)
PROJECT_DIRS = ("sluice", "stages", ".dvc")

# Small, fast settings for pipeline tests; a test overrides what it checks.
FAST_PARAMS = {
    "train": {"epochs": 4, "patience": 4, "checkpoint_every": 2, "threads": 1},
    "finetune": {"epochs": 2, "patience": 2},
    # Tests of tuning set their own budget; their small tables are cross-validated in 2 folds.
    "tune": {"trials": 0, "cv_folds": 2},
    # One reference (pipeline_checks.py fits both); the fewest timed calls for a model's cost;
    # figures only where a test looks at them (pipeline_checks.py, test_pipeline_calibration.py).
    "evaluate": {
        "bootstrap": 50,
        "reference": ["logreg"],
        "latency_repeats": {"b1": 5, "b1024": 3},
        "figures": False,
    },
    "promote": {"bootstrap": 100},
}


# Scratch space in memory: test projects (git, DVC cache, MLflow store, models) are written,
# committed and deleted thousands of times; on disk that is iowait, and pytest's removal of an
# old session's folders alone took 26 s at the end of a run. Used when TMPDIR is unset.
MEMORY_SCRATCH, MEMORY_SCRATCH_MIN_FREE = Path("/dev/shm"), 4 * 2**30


def pytest_configure(config):
    """A test session is a short-lived process too: what survives an older-generation
    collection (torch, MLflow, scikit-learn and pandas, imported once per worker) is not walked
    again by every later collection (sluice.stage.short_lived); new objects still are.

    Temporary folders (``tmp_path`` and every ``tempfile`` of the tests and the processes they
    start) go to :data:`MEMORY_SCRATCH` when TMPDIR is unset and it has room; pytest deletes
    them after a run that passed (``tmp_path_retention_policy``)."""
    import tempfile

    from sluice.stage import short_lived

    short_lived()
    if "TMPDIR" not in os.environ and _has_room(MEMORY_SCRATCH):
        os.environ["TMPDIR"] = str(MEMORY_SCRATCH)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def _has_room(folder: Path) -> bool:
    return (
        folder.is_dir()
        and os.access(folder, os.W_OK | os.X_OK)
        and shutil.disk_usage(folder).free >= MEMORY_SCRATCH_MIN_FREE
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadscope`` over the units of tests/scheduling.py (shared fixtures built once)."""
    from scheduling import UnitScheduling

    return UnitScheduling(config, log) if config.option.dist == "loadscope" else None


def pytest_collection_modifyitems(config, items):
    """Longest units first, the same order on every worker (tests/scheduling.py)."""
    from scheduling import order

    order(items)


def fit_settings(**overrides):
    """Training-loop settings for small unit tests: AdamW at 0.01, no schedule, 30 epochs that
    early stopping does not cut short, seed 0; ``overrides`` change any of them."""
    from sluice.model.training import FitSettings

    base = dict(
        optimizer="adamw",
        lr=0.01,
        weight_decay=0.0,
        schedule="none",
        epochs=30,
        batch_size=32,
        patience=30,
        monitor="loss",
        sampler="natural",
        augment_shift=0,
        seed=0,
    )
    return FitSettings(**{**base, **overrides})


@dataclass
class Project:
    """A temporary copy of the project, run like a user would run it."""

    path: Path
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """Run a command (``dvc ...``, ``python -m stages.x``, ``sluice ...``) in the project."""
        cmd = [str(BIN / args[0]) if (BIN / args[0]).exists() else args[0], *args[1:]]
        proc = subprocess.run(
            cmd,
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            )
        return proc

    def stage(self, name: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one stage module directly."""
        return self.run("python", "-m", f"stages.{name}", check=check)

    def set_params(self, overrides: dict) -> None:
        """Deep-merge ``overrides`` into the project's params.yaml."""
        path = self.path / "params.yaml"
        params = yaml.safe_load(path.read_text())
        _merge(params, overrides)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def read_json(self, rel: str):
        import json

        return json.loads((self.path / rel).read_text())

    def mlflow_client(self):
        """A client on this project's own store."""
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def make_project(dest: Path, params: dict | None = None, fast: bool = True) -> Project:
    """Copy the project's pipeline files into ``dest``, commit them, and apply ``params``.

    ``fast`` applies FAST_PARAMS first (tests); benchmarks keep the project's own params.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    for name in PROJECT_DIRS:
        shutil.copytree(
            ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache")
        )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DVC_")) and k != "SLUICE_DEBUG"
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        MPLBACKEND="Agg",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        PYTHONHASHSEED="0",
    )
    project = Project(dest, env)
    if fast:
        project.set_params(FAST_PARAMS)
    if params:
        project.set_params(params)
    project.run("git", "init", "-q", "-b", "main")
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "project")
    return project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A fresh project copy per test."""
    yield make_project(tmp_path / "proj")


def queue_states(project) -> dict[str, str]:
    """Experiment name -> status (Queued, Running, Success, Failed) from `dvc queue status`."""
    states = {}
    for line in project.run("dvc", "queue", "status").stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-1] in ("Queued", "Running", "Success", "Failed"):
            states[parts[1]] = parts[-1]
    return states


def run_queue(project, jobs: int, timeout_s: float = 900) -> dict[str, str]:
    """`dvc queue start -j <jobs>`, wait until nothing is queued or running, stop the workers.

    Waits on the experiments' git refs (each success writes one; a cheap check each second) and
    asks `dvc queue status` (a whole dvc process) only every 15 s, to see failures."""
    queued = len(queue_states(project))
    project.run("dvc", "queue", "start", "-j", str(jobs))
    deadline = time.monotonic() + timeout_s
    asked = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if len(_experiment_refs(project)) >= queued or time.monotonic() - asked > 15:
                asked = time.monotonic()
                states = queue_states(project)
                if states and not {"Queued", "Running"} & set(states.values()):
                    return states
            time.sleep(1)
        pytest.fail(f"queue not done after {timeout_s} s: {queue_states(project)}")
    finally:
        project.run("dvc", "queue", "stop", "--kill", check=False)


def _experiment_refs(project) -> list[str]:
    """The finished experiments' refs (``refs/exps/<2 hex>/<baseline rest>/<name>``), not the
    queue's own (``refs/exps/celery/stash``, ``refs/exps/exec/...``)."""
    refs = project.run("git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
    return [r for r in refs if len(parts := r.split("/")) == 5 and len(parts[2]) == 2]


def params_error(tmp_path: Path, text: str) -> str:
    """The error of loading a params.yaml holding ``text``; it must be one line."""
    from sluice.config import load_params
    from sluice.errors import SluiceError

    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(SluiceError) as err:
        load_params(path)
    assert "\n" not in str(err.value)
    return str(err.value)
