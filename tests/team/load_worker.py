"""One of the processes of the load test: log metrics, register versions, move an alias.

    python load_worker.py <experiment_id> <model_name> <worker> <go_file>

It says it is ready (a file ``ready-<worker>`` beside ``go_file``), waits until ``go_file``
exists (so that all workers hit the server at once), then prints one JSON line saying what it
did. MLFLOW_TRACKING_URI and the login come from the environment.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

STEPS = 25  # metric values logged one call at a time
BATCH = 100  # metric values logged in one batch
VERSIONS = 3  # versions each worker registers


def main(experiment_id: str, model_name: str, worker: int, go_file: Path) -> None:
    import mlflow
    from mlflow.entities import Metric

    from sluice.tracking.registry import record_alias_move
    from sluice.tracking.store import use_store

    use_store()
    client = mlflow.MlflowClient()
    (go_file.parent / f"ready-{worker}").touch()
    while not go_file.exists():
        time.sleep(0.01)
    run = client.create_run(experiment_id, run_name=f"worker-{worker}")
    run_id = run.info.run_id
    for step in range(STEPS):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    now = int(time.time() * 1000)
    batch = [Metric("acc", step / BATCH, now, step) for step in range(BATCH)]
    client.log_batch(run_id, metrics=batch)
    # Version numbers are handed out by the server: concurrent creations must not collide.
    versions = [
        client.create_model_version(
            model_name, f"runs:/{run_id}/model", run_id, tags={"worker": str(worker)}
        ).version
        for _ in range(VERSIONS)
    ]
    entry = record_alias_move(model_name, f"worker-{worker}", versions[-1], reason="load test")
    client.set_terminated(run_id)
    print(json.dumps({"run_id": run_id, "versions": versions, "seq": entry["seq"]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
