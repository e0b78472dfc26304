"""Evaluation results to MLflow: test metrics, plots and models, then registered versions."""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import pandas as pd

from sluice import paths
from sluice.config import Params
from sluice.evaluation.scoring import HEADLINE
from sluice.model.bundle import Classifier
from sluice.progress import track
from sluice.tracking.registry_io import log_bundle_model, register

log = logging.getLogger(__name__)


def log_evaluation(role: str, result: dict, classes: list[str], figures: bool = True) -> None:
    """Test metrics (with 95 % intervals), curve data and (``figures``) figures, into the
    active run."""
    import mlflow

    m = result["metrics"]
    mlflow.log_metrics(_test_scalars(m))
    mlflow.log_dict(m, "eval/metrics.json")
    mlflow.log_dict(result["roc"], "eval/roc.json")
    mlflow.log_dict(result["pr"], "eval/pr.json")
    diagrams = {role: result["reliability"]}
    if "reliability_uncalibrated" in result:  # a sluice model: before temperature scaling too
        diagrams = {
            "temperature-scaled": result["reliability"],
            "before scaling (T = 1)": result["reliability_uncalibrated"],
        }
    mlflow.log_dict(diagrams, "eval/reliability.json")
    if not figures:
        return
    from sluice.evaluation import plots  # matplotlib: only when figures are drawn

    history = paths.TRAIN_HISTORY.get(role)
    curves = pd.read_csv(history) if history and history.exists() else None
    for name, fig in plots.model_figures(role, result, classes, diagrams, curves):
        mlflow.log_figure(fig, f"eval/{name}.png")
        plots.close(fig)


def _test_scalars(m: dict) -> dict[str, float]:
    """The finite test metrics as MLflow metrics: ``test_<k>``, interval bounds, and the
    ``uncalibrated`` and ``decision`` groups as ``test_uncalibrated_<k>``, ``test_decision_<k>``
    (the temperature is already in the run, logged by training)."""

    def finite(group: dict) -> dict[str, float]:
        return {k: v for k, v in group.items() if isinstance(v, float) and math.isfinite(v)}

    scalars = {f"test_{k}": v for k, v in finite(m).items() if k != "temperature"}
    for k, (lo, hi) in m.get("ci95", {}).items():
        scalars |= {f"test_{k}_ci_low": lo, f"test_{k}_ci_high": hi}
    for group in ("uncalibrated", "decision"):
        scalars |= {f"test_{group}_{k}": v for k, v in finite(m.get(group, {})).items()}
    return scalars


def publish(
    results: dict[str, dict],
    models: dict[str, Classifier],
    test: pd.DataFrame,
    params: Params,
    selection: dict,
) -> dict[str, str]:
    """Log each model's evaluation into its training run (the challenger's also holds its
    comparison with the references, ``selection["vs_references"]``), log it as an MLflow model,
    register it, and set ``challenger`` on ``selection["role"]`` (the model chosen on
    validation). Returns role -> registered version."""
    import mlflow

    from sluice.tracking.runs import run_tags

    tags = run_tags("evaluate")
    # A reopened run belongs to this process now (stale-run cleanup looks at these tags).
    owner = {k: v for k, v in tags.items() if k.startswith("sluice.")}
    logged = {}
    for role, clf in track(models.items(), "evaluate: log to MLflow", unit="models"):
        with mlflow.start_run(run_id=clf.spec["lineage"]["run_id"], tags=owner):
            log_evaluation(role, results[role], clf.classes, params.evaluate.figures)
            if role == selection["role"] and selection.get("vs_references"):
                log_comparisons(selection["vs_references"])
            logged[role] = log_bundle_model(paths.MODELS[role], test, clf)
    if not params.registry.register:
        return {}
    return _register_all(results, models, logged, params, tags, selection)


def _register_all(
    results, models, logged: dict[str, str], params: Params, run: dict[str, str], selection: dict
) -> dict[str, str]:
    """Register every model and move ``challenger``: all of it, or (on failure) none of it."""
    import mlflow

    from sluice.tracking.registry import record_alias_move

    name, versions, created = params.registry.model_name, {}, []
    try:
        for role, clf in track(models.items(), "evaluate: register", unit="models"):
            m = results[role]["metrics"]
            tags = {
                "sluice.role": role,
                **_lineage_tags(clf, params, run),
                **{f"test_{k}": f"{m[k]:.6f}" for k in (*HEADLINE, "ece", "brier")},
                "sluice.temperature": f"{clf.temperature:.6f}",
                "sluice.decision": _decision_text(clf),
                **{f"val_{k}": f"{v:.6f}" for k, v in selection["val_scores"][role].items()},
            }
            run_id = clf.spec["lineage"]["run_id"]
            about = version_description(role, clf, params, m, run["mlflow.source.git.commit"])
            versions[role] = _registered_already(name, run_id, tags)
            if versions[role] is None:
                versions[role] = register(logged[role], name, run_id, tags, about)
                created.append(versions[role])
        best = selection["role"]
        record_alias_move(
            name,
            "challenger",
            versions[best],
            reason=f"best validation {selection['metric']} of this pipeline run ({best})",
        )
    except BaseException:
        client = mlflow.MlflowClient()
        for version in created:
            client.delete_model_version(name, version)
        raise
    return versions


def _registered_already(name: str, run_id: str, tags: dict[str, str]) -> str | None:
    """The version already registered for this training run, role and weights (a re-run of
    evaluate on the same models, e.g. after a failure), so that a re-run adds no duplicate."""
    import mlflow

    keys = ("sluice.role", "sluice.weights_sha256")
    found = mlflow.MlflowClient().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    same = [v for v in found if all(v.tags.get(k) == tags[k] for k in keys)]
    return str(max(int(v.version) for v in same)) if same else None


def version_description(role: str, clf: Classifier, params: Params, m: dict, commit: str) -> str:
    """One paragraph for the registry's version page: the data, the model, its test scores, and
    the run and commit it came from (the tags hold the same, one value each)."""
    arch = clf.spec["arch"]
    members = clf.spec.get("ensemble", {}).get("members")
    model = f"{arch} ensemble of {members}" if members else arch
    scores = ", ".join(f"{k} {m[k]:.4f}" for k in HEADLINE if isinstance(m.get(k), float))
    return (
        f"The {role} {model} model trained by sluice on {params.data.source} (target "
        f"{params.data.target or 'the dataset label'}; classes {', '.join(clf.classes)}), seed "
        f"{params.seed}. Test split: {scores}. Decision: {_decision_text(clf)}. Training run "
        f"{clf.spec['lineage']['run_id']}, git commit {commit[:12] or 'unknown'}."
    )


def _decision_text(clf: Classifier) -> str:
    """How the model turns probabilities into a label, e.g. ``p(1) >= 0.4210 (f1)``."""
    if clf.threshold is None:
        return "argmax"
    rule = clf.spec["decision"].get("rule", "given")
    return f"p({clf.classes[1]}) >= {clf.threshold:.4f} ({rule})"


def log_reference(
    role: str,
    run_params: dict,
    result: dict,
    classes: list[str],
    experiment_id: str,
    tags: dict,
    figures: bool = True,
) -> None:
    """A scikit-learn reference gets a run of its own, named by its role (it is not registered)."""
    import mlflow

    tags = {**tags, "sluice.role": role, "sluice.reference": "true"}
    with mlflow.start_run(experiment_id=experiment_id, run_name=role, tags=tags):
        mlflow.log_params(run_params)
        log_evaluation(role, result, classes, figures)


def log_comparisons(comparisons: dict[str, dict]) -> None:
    """The challenger against each reference (paired bootstrap on the test rows), into the
    active run: the difference and its interval as metrics, each verdict as a tag, and
    ``sluice.worse_than_reference`` naming the references it is worse than (or ``none``)."""
    import mlflow

    scalars, tags = {}, {}
    for ref, c in comparisons.items():
        name = f"test_{c['metric']}_vs_{ref}"
        for key, suffix in (("delta", ""), ("low", "_ci_low"), ("high", "_ci_high")):
            if c[key] is not None:
                scalars[f"{name}_delta{suffix}"] = c[key]
        tags[f"sluice.vs_{ref}"] = c["verdict"]
    worse = [ref for ref, c in comparisons.items() if c["verdict"] == "worse"]
    tags["sluice.worse_than_reference"] = ",".join(worse) or "none"
    mlflow.log_metrics(scalars)
    mlflow.set_tags(tags)
    mlflow.log_dict(comparisons, "eval/vs_references.json")


def _lineage_tags(clf: Classifier, params: Params, run: dict[str, str]) -> dict[str, str]:
    """Where a version came from: commit, experiment, data hashes (as dvc.lock has them), params;
    and its bundle's digest (``sluice.bundle_sha256``), which every load of the version checks:
    the bundle's own hashes can be rewritten by whoever can write the artifact store."""
    from sluice.tracking.registry_io import bundle_tags

    lineage = clf.spec.get("lineage", {})
    tags = {f"sluice.lineage.{k}": str(v) for k, v in lineage.items()}
    tags["sluice.weights_sha256"] = clf.spec["weights_sha256"]
    tags.update(bundle_tags(clf))
    tags["sluice.lineage.git_commit"] = run["mlflow.source.git.commit"]
    if "dvc.exp_name" in run:
        tags["sluice.lineage.dvc_exp_name"] = run["dvc.exp_name"]
    tags.update({f"sluice.lineage.dvc_md5.{k}": v for k, v in _dvc_lock_outs().items()})
    sections = ("seed", "data", "resample", "train", "finetune")
    tags["sluice.params"] = json.dumps(params.model_dump(include=set(sections)))[:4900]
    return tags


def _dvc_lock_outs() -> dict[str, str]:
    """MD5 of the data files the models were trained on, as recorded in dvc.lock."""
    import yaml

    lock = Path("dvc.lock")
    if not lock.exists():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    wanted = {str(p) for p in (paths.RESAMPLED, paths.SPLITS["train"], paths.SPLITS["val"])}
    return {
        Path(out["path"]).stem: out["md5"]
        for stage in stages.values()
        for out in stage.get("outs", [])
        if out.get("path") in wanted and "md5" in out
    }


def summary(results: dict[str, dict], versions: dict[str, str], selection: dict) -> str:
    """The table printed at the end of the pipeline, and which model is the challenger.

    A model whose result carries its ``cost`` (measured after training) also shows its p95
    latency at batch 1 and its bundle's size; the others show ``-``.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title="sluice: test split (95 % bootstrap intervals)")
    table.add_column("model")
    for k in HEADLINE:
        table.add_column(k)
    table.add_column("p95 ms (b1)", justify="right")
    table.add_column("MB", justify="right")
    table.add_column("version")
    for role, result in results.items():
        m = result["metrics"]
        cells = [_fmt(m[k], m.get("ci95", {}).get(k)) for k in HEADLINE]
        table.add_row(role, *cells, *_cost_cells(result.get("cost")), versions.get(role, "-"))
    names = list(next(iter(selection["val_scores"].values())))
    chosen = selection.get("chosen_on", "val")
    scores = ", ".join(
        f"{role} " + " / ".join(f"{s[k]:.4f}" for k in names)
        for role, s in selection["val_scores"].items()
    )
    out = io.StringIO()
    console = Console(file=out, width=190)
    console.print(table)
    console.print(
        f"challenger: {selection['role']}, chosen on {_CHOSEN_ON.get(chosen, chosen)} "
        f"{' / '.join(names)}: {scores}",
        highlight=False,
    )
    for ref, comparison in selection.get("vs_references", {}).items():
        line = comparison_line(selection["role"], ref, comparison)
        console.print(line, highlight=False, markup=False)
    for role, result in results.items():
        if "uncalibrated" in result["metrics"]:
            line = calibration_line(role, result["metrics"], result.get("calibrated_on", "val"))
            console.print(line, highlight=False, markup=False)
    return out.getvalue()


_CHOSEN_ON = {"val": "validation", "cross-validation": "out-of-fold (cross-validation)"}


def _cost_cells(cost: dict | None) -> tuple[str, str]:
    """p95 latency at batch 1 (ms) and bundle size (MB, 10^6 bytes), or ``-`` when unknown."""
    if not cost:
        return "-", "-"
    return f"{cost['latency_p95_ms_b1']:.3f}", f"{cost['bundle_bytes'] / 1e6:.3f}"


def calibration_line(role: str, m: dict, fitted_on: str = "val") -> str:
    """One plain line: a model's temperature and its test calibration before -> after."""
    raw = m["uncalibrated"]
    line = (
        f"calibration of {role} (temperature {m['temperature']:.3f}, "
        f"fitted on {fitted_on.replace('_', '-')}): "
        f"test ECE "
        f"{_num(raw['ece'])} -> {_num(m['ece'])}, log loss {_num(raw['log_loss'])} -> "
        f"{_num(m['log_loss'])}, Brier {_num(raw['brier'])} -> {_num(m['brier'])}"
    )
    if "decision" in m:
        d = m["decision"]
        line += f"; threshold {d['threshold']:.4f}: test F1 {d['f1']:.4f} (positive class)"
    return line


_VERDICTS = {
    "worse": "is worse than",
    "better": "is better than",
    "no clear difference": "is not clearly different from",
}


def comparison_line(role: str, ref: str, c: dict) -> str:
    """One plain line: how the challenger compares with a reference on the test rows."""
    head = f"challenger {role} {_VERDICTS.get(c['verdict'], 'vs')} {ref} on test {c['metric']}"
    if c["verdict"] == "undefined":
        return f"{head}: undefined on the test split, not judged"
    values = f"{_num(c['challenger'])} vs {_num(c['reference'])}"
    if c["verdict"] == "not compared":
        return f"{head}: {values}, not judged (evaluate.bootstrap is 0: no paired bootstrap)"
    delta = "n/a" if c["delta"] is None else f"{c['delta']:+.4f}"
    interval = f"95 % interval [{_num(c['low'])}, {_num(c['high'])}]"
    return f"{head}: {values} (difference {delta}, {interval}, paired bootstrap)"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _fmt(value: float, ci) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{value:.4f}"
