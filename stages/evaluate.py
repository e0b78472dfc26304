"""Stage evaluate: both models and the scikit-learn references on the test split; the challenger
chosen on validation and judged against the references; registered versions and reports."""

import sys

import pandas as pd

from sluice import paths
from sluice.config import load_params
from sluice.errors import report_errors
from sluice.io import read_json
from sluice.stage import run_stage


@report_errors
def main() -> None:
    params = load_params()
    from sluice.model.bundle import load_bundle
    from sluice.pipeline.evaluating import run_evaluation, write_reports
    from sluice.tracking.store import connect

    target = read_json(paths.CLEAN_REPORT)["target"]
    # Connect first: a tracking server that is down fails here, before anything is written.
    experiment_id = connect(params.registry.experiment)
    frames = {name: pd.read_parquet(paths.SPLITS[name]) for name in ("val", "test")}
    if params.evaluate.reference:  # the rows the models were fitted on, for the references
        frames["train"] = pd.read_parquet(paths.RESAMPLED)
    models = {role: load_bundle(path) for role, path in paths.MODELS.items()}
    evaluation = run_evaluation(models, frames, target, params, experiment_id)
    # Reports last: a failure above leaves no metrics or plots that claim a finished evaluation.
    write_reports(evaluation, params.registry.model_name)
    print(evaluation.summary(), file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
