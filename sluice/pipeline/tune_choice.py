"""The tune stage's search space and its choice: what a trial suggests, and the file it leaves.

A choice is a mapping of params sections, ``{"resample": {...}, "train": {...}}``, that
``sluice.config.apply_tuned`` lays over params.yaml; the stage writes it to
``reports/tuned.yaml`` (a DVC params file of resample, train and finetune). Nothing here
imports torch, MLflow or Optuna, so a skipped study costs no more than reading params.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Protocol

from sluice.config import Params, TuneSpace
from sluice.errors import SluiceError
from sluice.io import atomic_path, write_json
from sluice.tuned import TUNED_PATH, TUNED_SECTIONS

log = logging.getLogger(__name__)

TUNE_REPORT = Path("reports/tune.json")  # the study's summary (DVC metrics)
SHAPED = ("tabm", "mlp")  # families whose train.hidden the width and depth set
TABULAR = ("tabm", "mlp", "linear")


class Trial(Protocol):
    """The part of ``optuna.Trial`` a suggestion needs (tests pass a fixed one)."""

    def suggest_categorical(self, name: str, choices: list) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


def study_families(space: TuneSpace, image_rows: bool) -> list[str] | None:
    """The families a study chooses between (None: not searched, ``train.model`` stays).

    ``cnn`` fits only square image rows and is dropped otherwise. Raises when no listed family
    fits the data. Callers skip the study first when :func:`skip_reason` says so.
    """
    if space.model is None:
        return None
    fitting = [f for f in space.model if f in TABULAR or image_rows]
    if not fitting:
        raise SluiceError(
            f"tune.space.model {space.model} has no family for rows that are not square "
            f"images; add one of {', '.join(TABULAR)}"
        )
    return fitting


def skip_reason(params: Params, feature_types: dict[str, str]) -> str | None:
    """Why the study does not run (None: it runs)."""
    if params.tune.trials == 0:
        return "tune.trials is 0"
    space = params.tune.space.model
    if builds_cnn(params.train.model, feature_types) and space is not None and "cnn" not in space:
        # Image rows get the CNN, whose defaults are tuned by hand; a CNN trial costs
        # seconds, so a study over images is opt-in.
        return "train builds a CNN for these image rows and tune.space.model has no cnn"
    return None


def builds_cnn(model: str, feature_types: dict[str, str]) -> bool:
    """Whether ``train.model`` becomes the CNN for these columns: ``choose_arch`` of
    sluice.model.nets, restated without torch so that a skipped study stays cheap (a test holds
    the two together)."""
    n = len(feature_types)
    image_rows = math.isqrt(n) ** 2 == n and n >= 16
    numeric = all(t == "numeric" for t in feature_types.values())
    return model == "cnn" or (model == "auto" and image_rows and numeric)


def suggest_choice(
    trial: Trial, space: TuneSpace, families: list[str] | None, params: Params, default_arch: str
) -> dict[str, dict[str, Any]]:
    """One point of the search space as a choice; keys with a null space are left out.

    Suggestions come in a fixed order (family, width, depth, dropout, weight decay, learning
    rate, batch size, imbalance), so a seeded sampler repeats the same sequence. Floats are
    rounded to 3 significant digits: the trial trains with the values the file shows.
    """
    train: dict[str, Any] = {}
    arch = default_arch
    if families is not None:
        arch = train["model"] = trial.suggest_categorical("model", families)
    if arch in SHAPED and (space.width or space.depth):
        width = max(params.train.hidden)
        depth = len(params.train.hidden)
        if space.width:
            width = trial.suggest_int("width", *space.width, log=True)
        if space.depth:
            depth = trial.suggest_int("depth", *space.depth)
        train["hidden"] = [width] * depth
    if space.dropout and arch != "linear":
        train["dropout"] = _round(trial.suggest_float("dropout", *space.dropout))
    for key in ("weight_decay", "lr"):
        if getattr(space, key):
            train[key] = _round(trial.suggest_float(key, *getattr(space, key), log=True))
    if space.batch_size:
        train["batch_size"] = trial.suggest_categorical("batch_size", space.batch_size)
    resample: dict[str, Any] = {}
    if space.imbalance:
        resample = imbalance_values(trial.suggest_categorical("imbalance", space.imbalance))
    return {"resample": resample, "train": train}


def imbalance_values(strategy: str) -> dict[str, Any]:
    """An imbalance strategy as resample values: class weights, or an imbalanced-learn method."""
    if strategy == "class_weights":
        return {"method": "none", "class_weights": True}
    return {"method": strategy, "class_weights": False}


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def study_name(params: Params, data_md5: list[str]) -> str:
    """A name that changes with the data and with everything that shapes the study (the space,
    the seed, the base params), and not with its budget: a study in a shared storage
    (``tune.storage``) is continued, not mixed with another."""
    key = json.dumps(
        [
            data_md5,
            params.seed,
            params.tune.model_dump(exclude={"trials", "timeout", "storage"}),
            params.train.model_dump(exclude={"checkpoint_every"}),
            params.resample.model_dump(),
            params.data.max_categories,
        ],
        sort_keys=True,
    )
    return f"sluice-tune-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def write_choice(choice: dict[str, dict[str, Any]], note: str, report: dict[str, Any]) -> None:
    """Write the choice file (every section present, ``{}`` when nothing was chosen, so DVC
    can track each section) and the study's report, each atomically."""

    lines = [f"# {line}" for line in note.splitlines()]
    for name in TUNED_SECTIONS:
        values = choice.get(name, {})
        lines.append(f"{name}:" if values else f"{name}: {{}}")
        lines += [f"  {key}: {_flow(value)}" for key, value in values.items()]
    with atomic_path(TUNED_PATH) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    write_json(TUNE_REPORT, report)


def _flow(value: Any) -> str:
    """One value as YAML on one line (lists as ``[64, 64]``)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def write_skipped(reason: str) -> None:
    """An empty choice: the stages downstream use params.yaml as it is."""
    log.info("tune: skipped (%s)", reason)
    write_choice(
        {},
        f"The tune stage was skipped ({reason}): params.yaml is used as it is.\n"
        "Set the study up in the tune: section of params.yaml, not here.",
        {"trials": 0, "skipped": reason},
    )
