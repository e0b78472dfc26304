"""Stage evaluate: both models and a scikit-learn reference on the test split; register versions."""

import logging
import sys

import numpy as np
import pandas as pd

from sluice import paths
from sluice.config import load_params
from sluice.errors import report_errors
from sluice.io import read_json, write_json, write_table
from sluice.stage import run_stage

log = logging.getLogger("sluice.evaluate")


@report_errors
def main() -> None:
    params = load_params()
    from sluice.evaluation.scoring import (
        evaluate_predictions,
        fit_reference,
        pick_challenger,
        reference_proba,
        selection_scores,
    )
    from sluice.model.bundle import load_bundle
    from sluice.model.preprocess import encode_labels
    from sluice.pipeline.publish import log_reference, publish, summary
    from sluice.tracking.store import connect, run_tags

    target = read_json(paths.CLEAN_REPORT)["target"]
    # Connect first: a tracking server that is down fails here, before anything is written.
    experiment_id = connect(params.registry.experiment)
    test = pd.read_parquet(paths.SPLITS["test"])
    models = {role: load_bundle(path) for role, path in paths.MODELS.items()}
    classes = models["base"].classes
    y_true = encode_labels(test[target], classes, str(paths.SPLITS["test"]))
    n_boot, seed = params.evaluate.bootstrap, params.seed
    results = {
        role: evaluate_predictions(y_true, clf.predict_proba(test), classes, n_boot, seed)
        for role, clf in models.items()
    }
    # The challenger is chosen on the validation split: choosing on test would bias the very
    # test scores reported for it.
    val = pd.read_parquet(paths.SPLITS["val"])
    y_val = encode_labels(val[target], classes, str(paths.SPLITS["val"]))
    primary = params.promote.metric
    scores = {
        r: selection_scores(y_val, clf.predict_proba(val), primary) for r, clf in models.items()
    }
    selection = {"role": pick_challenger(scores, primary), "chosen_on": "val", "metric": primary}
    selection["val_scores"] = scores
    if params.evaluate.reference == "logreg":
        pre = models["base"].preprocessor
        train = pd.read_parquet(paths.RESAMPLED)
        y_train = encode_labels(train[target], classes, str(paths.RESAMPLED))
        ref = fit_reference(pre.transform(train), y_train, seed)
        prob = reference_proba(ref, pre.transform(test), len(classes))
        results["reference"] = evaluate_predictions(y_true, prob, classes, n_boot, seed)
        log_reference(results["reference"], classes, experiment_id, run_tags("evaluate"))
    versions = publish({r: results[r] for r in models}, models, test, params, selection)
    # Reports last: a failure above leaves no metrics or plots that claim a finished evaluation.
    write_reports(results)
    registered = {"model_name": params.registry.model_name, "versions": versions}
    write_json(paths.REGISTERED, {**registered, "challenger": selection})
    print(summary(results, versions, selection), file=sys.stderr)


def write_reports(results: dict[str, dict]) -> None:
    """Metrics JSON and plot data for `dvc metrics` / `dvc plots` (deterministic content)."""
    write_json(paths.METRICS, {role: r["metrics"] for role, r in results.items()})
    for role, r in results.items():
        write_json(paths.PLOTS / f"roc_{role}.json", _points(r["roc"], ("fpr", "tpr")))
        write_json(paths.PLOTS / f"pr_{role}.json", _points(r["pr"], ("recall", "precision")))
        write_table(paths.PLOTS / f"confusion_{role}.csv", pd.DataFrame(r["confusion"]))


def _points(curve: dict, keys: tuple[str, str]) -> list[dict]:
    xs, ys = (np.asarray(curve[k]) for k in keys)
    return [{keys[0]: float(x), keys[1]: float(y)} for x, y in zip(xs, ys, strict=True)]


if __name__ == "__main__":
    run_stage(main)
