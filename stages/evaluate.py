"""Stage evaluate: both models and the scikit-learn references on the test split; the challenger
chosen on validation and judged against the references; registered versions and reports; then
the pipeline execution's parent MLflow run ends with the challenger's test metrics."""

import sys

import pandas as pd

from sluice import paths
from sluice.config import load_params
from sluice.errors import report_errors
from sluice.io import read_json
from sluice.stage import run_stage
from sluice.tuned import load_tuned_params


@report_errors
def main() -> None:
    params = load_params()
    from sluice.model.bundle import load_bundle
    from sluice.pipeline.evaluating import run_evaluation, write_reports
    from sluice.tracking.grouping import fail_execution
    from sluice.tracking.runs import require_runs
    from sluice.tracking.store import connect

    target = read_json(paths.CLEAN_REPORT)["target"]
    # Connect first: a tracking server that is down fails here, before anything is written.
    experiment_id = connect(params.registry.experiment)
    try:
        frames = {name: pd.read_parquet(paths.SPLITS[name]) for name in ("val", "test")}
        if params.evaluate.reference:  # the rows the models were fitted on, for the references
            frames["train"] = pd.read_parquet(paths.RESAMPLED)
        models = {role: load_bundle(path) for role, path in paths.MODELS.items()}
        # Models trained against another store (MLFLOW_TRACKING_URI switched): stop here.
        require_runs({str(paths.MODELS[r]): m.spec["lineage"]["run_id"] for r, m in models.items()})
        evaluation = run_evaluation(models, frames, target, params, experiment_id)
        # Reports last: a failure above leaves no metrics or plots that claim a finished
        # evaluation.
        write_reports(evaluation, params.registry.model_name)
        finish(evaluation, models, experiment_id)
    except BaseException as exc:  # the execution failed here: its parent run ends FAILED
        fail_execution(experiment_id, f"evaluate: {type(exc).__name__}: {exc}")
        raise
    print(evaluation.summary(), file=sys.stderr)


def finish(evaluation, models: dict, experiment_id: str) -> None:
    """End the execution's parent run: the challenger's test metrics, every param in effect
    (params.yaml with the tune stage's choice), the challenger's run and version."""
    from sluice.tracking.grouping import finish_execution

    role = evaluation.selection["role"]
    metrics = evaluation.results[role]["metrics"]
    tags = {
        "sluice.challenger": role,
        "sluice.challenger_run_id": models[role].spec["lineage"]["run_id"],
        "sluice.challenger_version": str(evaluation.versions.get(role, "")),
    }
    values = {f"test_{k}": v for k, v in metrics.items()}
    for k, (low, high) in metrics.get("ci95", {}).items():
        values |= {f"test_{k}_ci_low": low, f"test_{k}_ci_high": high}
    finish_execution(experiment_id, values, load_tuned_params().model_dump(), tags)


if __name__ == "__main__":
    run_stage(main)
