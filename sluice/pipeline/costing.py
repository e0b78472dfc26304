"""What a freshly trained model costs: measured on its bundle, logged to its run, kept in it.

The bundle is loaded back from disk and timed on its serving path (raw validation rows in,
probabilities out) by :func:`sluice.evaluation.cost.measure_latency`; the numbers become metrics
of the model's MLflow run and the ``cost`` record of its ``model.json``, which travels with the
registered model, so the promotion gate reads it without the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from sluice.config.evaluate import LatencyRepeats
from sluice.evaluation.cost import cost_record
from sluice.model.bundle import load_bundle, update_spec

log = logging.getLogger(__name__)


def record_cost(bundle_dir: Path, val: pd.DataFrame, repeats: LatencyRepeats) -> dict[str, float]:
    """Measure the bundle at ``bundle_dir`` on the rows of ``val``, log the cost as metrics of
    the active run, and add it to the bundle's ``model.json`` (weights and their hash unchanged).

    ``bundle_bytes`` is the bundle as training wrote it, before this record was added.
    Returns the cost record.
    """
    import mlflow

    bundle_dir = Path(bundle_dir)
    size = sum(f.stat().st_size for f in bundle_dir.rglob("*") if f.is_file())
    classifier = load_bundle(bundle_dir)
    run_id = mlflow.active_run().info.run_id
    cost = cost_record(
        classifier.predict_proba,
        val[classifier.feature_columns],
        repeats.by_batch(),
        bundle_bytes=size,
        param_count=sum(p.numel() for p in classifier.net.parameters()),
        train_seconds=mlflow.get_run(run_id).data.metrics.get("train_seconds"),
    )
    mlflow.log_metrics(cost)
    record = {**cost, "measured_on": "val", "repeats": repeats.model_dump()}
    update_spec(bundle_dir, cost=record)
    log.info(
        "cost: p95 latency %.3f ms (batch 1), %.3f ms (batch 1024), %.0f rows/s, %.2f MB",
        cost["latency_p95_ms_b1"],
        cost["latency_p95_ms_b1024"],
        cost["rows_per_s"],
        size / 1e6,
    )
    return cost
