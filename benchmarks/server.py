"""The team tracking server: how long `make server` takes, and `dvc repro` against it vs SQLite.

1. `sluice server start` (what `make server` runs) on an empty folder until the server
   answers its admin, then a second `start` (a no-op), then `stop`.
2. The default `dvc repro` (the project's own params) in fresh project copies, alternating
   between the local SQLite store and one running server (PostgreSQL, basic auth, proxied
   artifacts), so that both see the same moments of the machine.
3. Shared tuning: the tune stage finishing a study of ``--tune-trials`` trials (of
   ``--tune-epochs`` epochs on breast-cancer) kept in the
   server's PostgreSQL, alone and with one `python -m stages.tune --worker` beside it
   (alternating; the study is deleted after each run, so both do the same work).

Prints medians and writes benchmarks/results/server.json.

    python benchmarks/server.py [--runs 3] [--tune-trials 16]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_project  # noqa: E402  (the tests' project copier)

SLUICE = Path(sys.executable).with_name("sluice")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server(*args: str) -> tuple[float, str]:
    """Run `sluice server`; return (seconds, stdout)."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(SLUICE), "server", *args], capture_output=True, text=True, check=True
    )
    return time.perf_counter() - start, done.stdout


def exports(output: str) -> dict[str, str]:
    pairs = [line.removeprefix("export ").split("=", 1) for line in output.splitlines()]
    return {p[0]: p[1] for p in pairs if len(p) == 2 and p[0].startswith(("MLFLOW_", "PGPASS"))}


def storage_url(output: str) -> str:
    return output.rsplit("tune.storage for a shared Optuna study: ", 1)[1].split()[0]


def repro_seconds(tmp: Path, name: str, env: dict[str, str] | None) -> float:
    """Wall time of the default `dvc repro` in a fresh copy (``env`` adds the server's)."""
    project = make_project(tmp / name, fast=False)
    if env:
        project.env = {**project.env, **env}
    start = time.perf_counter()
    project.run("dvc", "repro")
    return time.perf_counter() - start


def tune_seconds(
    tmp: Path, name: str, output: str, trials: int, workers: int, epochs: int = 4
) -> float:
    """Wall time of the tune stage with ``workers - 1`` workers beside it, until all are done."""
    import optuna

    tune = {"trials": trials, "startup_trials": 3, "pruner": "none", "storage": storage_url(output)}
    tune["space"] = {"model": ["mlp"], "imbalance": None}
    train = {"epochs": epochs, "patience": epochs}  # each trial trains this many epochs
    params = {"data": {"name": "breast-cancer"}, "tune": tune, "train": train}
    project = make_project(tmp / name, params)
    project.env = {**project.env, **exports(output)}
    project.run("dvc", "repro", "split")
    start = time.perf_counter()
    extra = [
        subprocess.Popen([sys.executable, "-m", "stages.tune", "--worker"], cwd=project.path,
                         env=project.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers - 1)
    ]  # fmt: skip
    project.run("dvc", "repro", "tune")
    assert all(p.wait() == 0 for p in extra)
    seconds = time.perf_counter() - start
    study = project.read_json("reports/tune.json")["study"]
    os.environ["PGPASSFILE"] = exports(output)["PGPASSFILE"]
    optuna.delete_study(study_name=study, storage=tune["storage"])  # the next run starts afresh
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tune-trials", type=int, default=16)
    parser.add_argument("--tune-epochs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o711)  # PostgreSQL's own user must reach the server folder
        state = ["--state-dir", str(tmp / "server")]
        cold, output = server("start", "--port", str(free_port()), *state)
        try:
            again, _ = server("start", *state)
            print(f"make server: {cold:.1f} s from nothing, {again:.2f} s when running", flush=True)
            sqlite, remote = [], []
            for i in range(args.runs):
                sqlite.append(repro_seconds(tmp, f"sqlite-{i}", None))
                remote.append(repro_seconds(tmp, f"server-{i}", exports(output)))
                print(f"run {i + 1}: sqlite {sqlite[-1]:.1f} s, server {remote[-1]:.1f} s")
            alone, shared = [], []
            for i in range(args.runs):
                trials, epochs = args.tune_trials, args.tune_epochs
                alone.append(tune_seconds(tmp, f"tune1-{i}", output, trials, 1, epochs))
                shared.append(tune_seconds(tmp, f"tune2-{i}", output, trials, 2, epochs))
                print(f"tune {i + 1}: alone {alone[-1]:.1f} s, with a worker {shared[-1]:.1f} s")
        finally:
            server("stop", *state)
    result = {
        "make_server_cold_s": cold,
        "make_server_again_s": again,
        "dvc_repro_sqlite_s": {"median": statistics.median(sqlite), "all": sqlite},
        "dvc_repro_server_s": {"median": statistics.median(remote), "all": remote},
        "ratio": statistics.median(remote) / statistics.median(sqlite),
        "tune_trials": args.tune_trials,
        "tune_epochs": args.tune_epochs,
        "tune_alone_s": {"median": statistics.median(alone), "all": alone},
        "tune_with_a_worker_s": {"median": statistics.median(shared), "all": shared},
    }
    out = ROOT / "benchmarks" / "results" / "server.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"dvc repro (default params): SQLite median {result['dvc_repro_sqlite_s']['median']:.1f} s,"
        f" server median {result['dvc_repro_server_s']['median']:.1f} s,"
        f" ratio {result['ratio']:.2f} over {args.runs} runs each"
    )
    print(
        f"tune stage, {args.tune_trials} trials of {args.tune_epochs} epochs in PostgreSQL: alone "
        f"{result['tune_alone_s']['median']:.1f} s, with one worker "
        f"{result['tune_with_a_worker_s']['median']:.1f} s"
    )


if __name__ == "__main__":
    main()
