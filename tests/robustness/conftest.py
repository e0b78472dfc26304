"""Helpers for the robustness tier: messy CSVs, project copies and what a failure left behind.

Pipeline-level tests run the real ``dvc repro`` (or one stage) in a throwaway project copy with its
own MLflow store, and then look at the files and the store exactly as a user would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN, Project, make_project

CSV = "data/raw/messy.csv"
TARGET = "outcome"
# The messy CSV, read as the user declared it: zip codes are categories, the id is dropped.
MESSY_PARAMS = {
    "data": {
        "path": CSV,
        "target": TARGET,
        "columns": {"zip": "categorical"},
        "drop_columns": ["id"],
    },
    "resample": {"method": "smote"},
}
IGNORED_DIRS = {".git", "__pycache__", "tmp", "cache"}  # git, bytecode, .dvc/tmp, .dvc/cache


# Training long enough to be interrupted mid-way (fault tests): a signal follows the first
# checkpoint (epoch 3) within a fraction of a second; the 77 epochs left take seconds.
LONG_TRAIN = {"train": {"epochs": 80, "patience": 80, "checkpoint_every": 3}}


def messy_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A raw table the way users have them (``n`` rows plus 5 % exact duplicates).

    Numeric columns with gaps, text categories with gaps and stray spaces, an integer-coded
    category with gaps (``zip``: pandas reads it back as floats), a boolean, an id to drop, and
    a three-class label spelt inconsistently (" yes", "Yes ", "NO") whose smallest class is
    about 6 % of the rows.
    """
    rng = np.random.default_rng(seed)
    label = rng.choice(["no", "yes", "maybe"], size=n, p=[0.74, 0.2, 0.06])
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "age": np.round(rng.normal(40, 10, n) + 12 * (label == "yes"), 1),
            "income": np.round(rng.lognormal(10, 0.4, n) * (1 + (label == "maybe")), 2),
            "color": np.where(label == "maybe", "red", rng.choice(["red", "green", " blue"], n)),
            "zip": rng.choice([10001, 10002, 20001, 94105], n),
            "member": rng.random(n) < 0.4 + 0.4 * (label == "yes"),
        }
    )
    df.loc[rng.random(n) < 0.05, "age"] = np.nan
    df.loc[rng.random(n) < 0.05, "color"] = None
    df["zip"] = df["zip"].where(rng.random(n) > 0.03)  # gaps: pandas reads 10001 as 10001.0
    spelled = {"yes": [" yes", "Yes ", "yes"], "no": ["no", "NO", "no "], "maybe": ["maybe"]}
    df[TARGET] = [spelled[v][i % len(spelled[v])] for i, v in enumerate(label)]
    duplicates = df.sample(frac=0.05, random_state=seed)
    return pd.concat([df, duplicates], ignore_index=True)


def write_csv(project: Project, frame: pd.DataFrame | str | bytes, rel: str = CSV) -> Path:
    """Put a CSV (a frame, or raw text/bytes for broken files) into the project."""
    path = project.path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(frame, pd.DataFrame):
        frame.to_csv(path, index=False)
    elif isinstance(frame, str):
        path.write_text(frame)
    else:
        path.write_bytes(frame)
    return path


def copy_project(src: Project, dest: Path, store: bool = False) -> Project:
    """A copy of a project (git, DVC cache, outputs); with a fresh MLflow store unless ``store``.

    Runs in the source store point their artifacts at the source's folder, so a copy that
    keeps the store would write into the source; a fresh one is independent.
    """
    skip = () if store else ("mlflow.db", "mlflow.db-*", "mlartifacts")
    shutil.copytree(src.path, dest, symlinks=True, ignore=shutil.ignore_patterns(*skip))
    return Project(dest, dict(src.env))


def stage_outputs(project: Project) -> dict[str, list[str]]:
    """Each stage's outputs and metrics, in pipeline order, as dvc.yaml declares them."""
    stages = yaml.safe_load((project.path / "dvc.yaml").read_text())["stages"]
    return {
        name: [
            next(iter(o)) if isinstance(o, dict) else o
            for o in [*stage.get("outs", []), *stage.get("metrics", [])]
        ]
        for name, stage in stages.items()
    }


def outputs_from(project: Project, stage: str) -> list[str]:
    """The outputs of ``stage`` and of every stage after it."""
    outs = stage_outputs(project)
    names = list(outs)
    return [o for name in names[names.index(stage) :] for o in outs[name]]


def file_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (but git, bytecode and DVC's own tmp/cache) -> (size, mtime)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            stat = path.stat()
            snap[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return snap


def temp_leftovers(project: Project) -> list[str]:
    """Temporary siblings that atomic writes leave only if they are broken ('.name.xxxx')."""
    found = []
    for top in ("data", "models", "reports", ".sluice"):
        for path in (project.path / top).rglob(".*"):
            if path.name not in (".gitkeep", ".gitignore"):
                found.append(str(path.relative_to(project.path)))
    return found


def model_versions(project: Project) -> list:
    """Every registered model version in the project's store (none if there is no store)."""
    if not (project.path / "mlflow.db").exists():
        return []
    return list(project.mlflow_client().search_model_versions())


def runs_by_status(project: Project) -> dict[str, list[str]]:
    """status -> run names, over every experiment of the project's store (the runs that
    stages start; each execution's parent run aside)."""
    if not (project.path / "mlflow.db").exists():
        return {}
    client = project.mlflow_client()
    ids = [e.experiment_id for e in client.search_experiments()]
    found: dict[str, list[str]] = {}
    for run in client.search_runs(ids) if ids else []:
        if "sluice.execution" not in run.data.tags:  # not the pipeline execution's parent run
            found.setdefault(run.info.status, []).append(run.info.run_name)
    return found


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error: ...`` line a refusing stage prints (asserting there is exactly one)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def start(project: Project, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a command in the project in its own process group (a terminal's foreground job)."""
    cmd = [str(BIN / args[0]) if (BIN / args[0]).exists() else args[0], *args[1:]]
    return subprocess.Popen(
        cmd,
        cwd=project.path,
        env=env or project.env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_foreground_signals,
    )


def _foreground_signals() -> None:
    """Ctrl-C and Ctrl-\\ as a terminal's foreground job receives them: handled by default and
    not blocked. A suite started in the background by a non-interactive shell (`make test &`)
    ignores both, and a child inherits what it ignores and what it blocks."""
    terminal = {signal.SIGINT, signal.SIGQUIT}
    for sig in terminal:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, terminal)


def signal_state(pid: int) -> str:
    """The ignored, blocked and caught signal masks of a process (for failure messages)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return " ".join(line for line in status if line.startswith(("SigIgn", "SigBlk", "SigCgt")))


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; fail early (with the output) if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended ({proc.returncode}) before the condition:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("condition not reached in time")
        time.sleep(0.05)


def checkpoints(project: Project) -> list[Path]:
    """Training checkpoints the train and finetune stages keep under .sluice/checkpoints."""
    return sorted((project.path / ".sluice" / "checkpoints").glob("*.pt"))


@pytest.fixture(scope="session")
def messy_pipeline(tmp_path_factory) -> Project:
    """The whole pipeline (`dvc repro`) once on the messy CSV, shared by read-only checks."""
    project = make_project(tmp_path_factory.mktemp("messy") / "proj", MESSY_PARAMS)
    write_csv(project, messy_frame())
    project.run("dvc", "repro")
    return project


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Project:
    """The messy project with clean, split and resample done (`dvc repro resample`): a template
    for tests that start at the train stage. Copy it with :func:`copy_project`."""
    project = make_project(tmp_path_factory.mktemp("prepared") / "proj", MESSY_PARAMS)
    write_csv(project, messy_frame())
    project.run("dvc", "repro", "resample")
    return project


def can_mount() -> bool:
    """Whether a test may mount a file system in a mount namespace of its own (``unshare -rm``:
    as root, or through a user namespace)."""
    try:
        done = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# Mount a fresh tmpfs over a folder, run the command, then list what the tmpfs holds.
_ON_TMPFS = """opts=$1 dir=$2 out=$3; shift 3
mount -t tmpfs -o "$opts" tmpfs "$dir" || exit 99
"$@"; rc=$?
ls -A "$dir" > "$out"
exit $rc
"""


def run_on_tmpfs(
    project: Project, folder: str, options: str, *args: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a command in the project with ``folder`` on a new tmpfs mounted with ``options``
    (``size=8k``: a real full disk; ``ro``: a real read-only one), in its own mount namespace
    (see :func:`can_mount`); return its result and what the tmpfs held when it ended."""
    cmd = [str(BIN / args[0]) if (BIN / args[0]).exists() else args[0], *args[1:]]
    listing = project.path.parent / f"{Path(folder).name}.listing"
    (project.path / folder).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", _ON_TMPFS, "sh", options, folder, str(listing), *cmd],
        cwd=project.path,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode != 99, f"mount failed: {proc.stderr[-2000:]}"
    return proc, listing.read_text().split()
