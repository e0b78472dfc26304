"""Which configuration a study chooses: its best trial, or params.yaml's own values.

On a small table (a cross-validated study) the trials' scores differ by less than their noise:
the best of 20 trials is partly the luckiest, and on breast-cancer it generalised worse than the
hand-set defaults. So a cross-validated study also scores the defaults, once per model family it
searches (its "defaults" candidates, on the same folds; on a table with text, the text
families), and the best trial replaces them only when it beats the best of them by more than
one standard error of their paired per-fold differences (the one-standard-error rule of
cross-validated model selection, anchored on the defaults rather than on the simplest model).
A study scored on one validation split has no per-fold spread and chooses its best trial, as
before.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from sluice.errors import SluiceError


def study_result(
    study, metric: str, name: str, defaults: list[dict[str, Any]] | None = None
) -> tuple[dict, dict, str | None]:
    """The chosen choice, the study's summary for reports/tune.json, and the chosen MLflow run.

    The best trial has the best ``metric``; ties go to the better macro F1, then the lower log
    loss, then the earlier trial (ROC AUC often ties on small validation splits). ``defaults``
    are the scored default candidates (``choice``, ``scores``, ``fold_scores``, ``family``,
    ``mlflow_run_id``) of a cross-validated study; see the module's docstring.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise SluiceError(
            f"tune: study {name} has no complete trial; raise tune.timeout or tune.trials"
        )
    sign = -1.0 if metric == "log_loss" else 1.0
    best = max(complete, key=lambda t: _rank(t.user_attrs["scores"], metric, sign, t.number))
    report: dict[str, Any] = {
        "study": name,
        "metric": metric,
        "trials": len(complete) + sum(t.state == TrialState.PRUNED for t in trials),
        "complete": len(complete),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "best_trial": best.number,
        "best_value": best.value,
        **{f"best_val_{k}": v for k, v in best.user_attrs["scores"].items()},
        "chosen": f"trial {best.number}",
    }
    chosen = {
        "choice": best.user_attrs["choice"],
        "scores": best.user_attrs["scores"],
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
    }
    if defaults:
        anchor = max(defaults, key=lambda d: _rank(d["scores"], metric, sign, 0))
        margin, se = paired_margin(best.user_attrs["fold_scores"], anchor["fold_scores"], sign)
        report["defaults"] = {d["family"]: d["scores"][metric] for d in defaults}
        report["margin_over_defaults"] = margin
        report["margin_se"] = se
        if not margin > se:  # not clearly better (NaN margins keep the defaults too)
            chosen = anchor
            report["chosen"] = f"defaults {anchor['family']}"
    report |= {f"chosen_val_{k}": v for k, v in chosen["scores"].items()}
    return chosen["choice"], report, chosen["mlflow_run_id"]


def paired_margin(best: list[float], anchor: list[float], sign: float) -> tuple[float, float]:
    """How much ``best`` beats ``anchor`` (per-fold scores, same folds), as the mean of the
    per-fold improvements and its standard error; ``sign`` is 1 where higher is better."""
    gains = [sign * (b - a) for b, a in zip(best, anchor, strict=True)]
    if len(gains) < 2 or any(math.isnan(g) for g in gains):
        return math.nan, math.nan
    return statistics.fmean(gains), statistics.stdev(gains) / math.sqrt(len(gains))


def _rank(scores: dict[str, float], metric: str, sign: float, number: int) -> tuple:
    keys = (sign * scores[metric], scores["f1_macro"], -scores["log_loss"])
    return (*(-math.inf if math.isnan(v) else v for v in keys), -number)
