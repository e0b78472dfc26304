"""What a study searches: the part of ``tune.space`` that fits the table, and one trial's point
of it as a choice.

A table with a text column can only be read by a text family (``ngram``, ``bilstm``), and only
samplers that copy or drop whole rows keep its texts real; a table without one cannot feed a
text family. So the space is narrowed to what fits before the study starts, and what was left
out is logged and recorded in the study's report. Nothing here imports torch, MLflow or Optuna.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sluice.config import Params, TuneSpace
from sluice.config.tune import TEXT_FAMILIES, TUNE_RANGES
from sluice.data.resampling import TEXT_METHODS
from sluice.errors import SluiceError

log = logging.getLogger(__name__)

SHAPED = ("tabm", "mlp")  # families whose train.hidden the width and depth set
TABULAR = ("tabm", "mlp", "linear")
# What a study on a table with text may choose for the imbalance: class weights reweight the
# loss, and whole-row samplers copy or drop real texts.
TEXT_IMBALANCE = ("class_weights", *TEXT_METHODS)


class Trial(Protocol):
    """The part of ``optuna.Trial`` a suggestion needs (tests pass a fixed one)."""

    def suggest_categorical(self, name: str, choices: list) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


def text_columns(feature_types: dict[str, str]) -> list[str]:
    """The feature columns of type text, in table order."""
    return [col for col, kind in feature_types.items() if kind == "text"]


def study_families(
    space: TuneSpace, image_rows: bool, text: list[str] | None = None
) -> list[str] | None:
    """The families a study chooses between (None: not searched, ``train.model`` stays).

    With ``text`` columns: the text families of the space, or ``ngram`` (what ``train.model:
    auto`` picks) when it names none, since a bilstm trial costs as much as many ngram ones and
    was not better on the benchmark's tables. Without:
    its other families, where ``cnn`` fits only square image rows. Raises when no listed family
    fits the data. Callers skip the study first when ``choice.skip_reason`` says so.
    """
    if space.model is None:
        return None
    if text:
        return [f for f in space.model if f in TEXT_FAMILIES] or ["ngram"]
    fitting = [f for f in space.model if f in TABULAR or (f == "cnn" and image_rows)]
    if fitting:
        return fitting
    if set(space.model) <= set(TEXT_FAMILIES):
        raise SluiceError(
            f"tune.space.model {space.model} holds only text families, but the table has no "
            f"text column; add one of {', '.join(TABULAR)}, or declare a column text in "
            "data.columns"
        )
    raise SluiceError(
        f"tune.space.model {space.model} has no family for rows that are not square "
        f"images; add one of {', '.join(TABULAR)}"
    )


def study_space(
    space: TuneSpace, feature_types: dict[str, str], image_rows: bool
) -> tuple[TuneSpace, dict[str, Any]]:
    """``space`` narrowed to what fits the table, and what was left out of it and why.

    The narrowed space's ``model`` is the families searched (:func:`study_families`), its
    ``imbalance`` the strategies kept (None when none is: resample stays as params.yaml sets
    it). The left-out record is ``{}`` when nothing was, else e.g. ``{"model": [...],
    "imbalance": [...], "reason": "text column 'review'"}`` (only the keys that lost choices).
    """
    text = text_columns(feature_types)
    families = study_families(space, image_rows, text)
    imbalance = space.imbalance
    if text and imbalance is not None:
        imbalance = [m for m in imbalance if m in TEXT_IMBALANCE] or None
    left_out: dict[str, Any] = {}
    if space.model is not None:
        cut = [f for f in space.model if f not in families and (text or f in TEXT_FAMILIES)]
        left_out |= {"model": cut} if cut else {}
    if space.imbalance is not None:
        cut = [m for m in space.imbalance if m not in (imbalance or [])]
        left_out |= {"imbalance": cut} if cut else {}
    if left_out:
        left_out["reason"] = f"text column {text[0]!r}" if text else "no text column"
        _log_left_out(left_out, families, imbalance)
    return space.model_copy(update={"model": families, "imbalance": imbalance}), left_out


def _log_left_out(
    left_out: dict[str, Any], families: list[str] | None, imbalance: list[str] | None
) -> None:
    """One line: what the study leaves out of tune.space, why, and what it searches instead."""
    cut = "; ".join(f"{k} {', '.join(v)}" for k, v in left_out.items() if k != "reason")
    kept = f"model {', '.join(families or ['as train.model'])}; imbalance "
    kept += ", ".join(imbalance) if imbalance else "not searched (resample as params.yaml sets)"
    log.info("tune: left out of tune.space: %s (%s); searching %s", cut, left_out["reason"], kept)


def suggest_choice(
    trial: Trial, space: TuneSpace, families: list[str] | None, params: Params, default_arch: str
) -> dict[str, dict[str, Any]]:
    """One point of the search space as a choice; keys with a null space are left out.

    ``space`` is the narrowed space of :func:`study_space`; ``params`` gives the values of
    what it does not search.
    Suggestions come in a fixed order (family, width, depth, the text knobs, dropout, weight
    decay, learning rate, batch size, imbalance), so a seeded sampler repeats the same
    sequence. Floats are rounded to 3 significant digits: the trial trains with the values the
    file shows.
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
    if text := suggest_text(trial, space, arch):
        train["text"] = text
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


def default_point(
    space: TuneSpace, families: list[str] | None, params: Params, default_arch: str
) -> dict[str, Any]:
    """params.yaml's own values as a point of the study's space, under the names
    :func:`suggest_choice` suggests them by: what the study tries first (Optuna's
    ``enqueue_trial``), so that the hand-set configuration is always among the candidates.
    ``train.hidden`` becomes ``[max] * len`` (the shape of every trial's network). A value the
    space cannot hold (out of its range, not among its choices) is left out and sampled
    instead. Without it, 20 trials of a study whose start-up draws all rebalanced the
    classes never tried ``none`` (bird strikes, 90 % one class) and chose a SMOTE network
    0.08 test ROC AUC behind logistic regression.
    """
    t = params.train
    arch = default_arch if families is None else t.model
    if arch not in (families or [arch]):
        arch = default_arch  # train.model auto (or a family the study leaves out)
    values: dict[str, Any] = {"model": arch, "dropout": t.dropout, "batch_size": t.batch_size}
    values |= {"weight_decay": t.weight_decay, "lr": t.lr}
    if arch in SHAPED:
        values |= {"width": max(t.hidden), "depth": len(t.hidden)}
    text = {"max_len": t.text.max_len, "embedding": t.text.embedding, "buckets": t.text.buckets}
    text |= {"text_hidden": t.text.hidden, "text_layers": t.text.layers, "cell": t.text.cell}
    text["pretrain_epochs"] = t.text.pretrain_epochs
    if arch in TEXT_FAMILIES:
        values |= text
    r = params.resample
    values["imbalance"] = "class_weights" if r.class_weights and r.method == "none" else r.method
    point = {}
    for name, value in values.items():
        allowed = families if name == "model" else getattr(space, name, None)
        if allowed is None:
            continue  # not searched
        if _holds(allowed, value, ranged=name in TUNE_RANGES):
            point[name] = value
    return point


def _holds(allowed: list, value: Any, ranged: bool) -> bool:
    """Whether a searched key's ``[low, high]`` range (``ranged``) or choices hold ``value``."""
    if not ranged:
        return value in allowed
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return numeric and allowed[0] <= value <= allowed[1]


def suggest_text(trial: Trial, space: TuneSpace, arch: str) -> dict[str, Any]:
    """The ``train.text`` values of a trial of a text family (``{}`` for the other families):
    the length and embedding for both, the recurrent network's shape and pretraining for
    bilstm, the bigram buckets for ngram."""
    if arch not in TEXT_FAMILIES:
        return {}
    text: dict[str, Any] = {}
    if space.max_len:
        text["max_len"] = trial.suggest_int("max_len", *space.max_len, log=True)
    if space.embedding:
        text["embedding"] = trial.suggest_int("embedding", *space.embedding, log=True)
    if arch == "bilstm":
        if space.text_hidden:
            text["hidden"] = trial.suggest_int("text_hidden", *space.text_hidden, log=True)
        if space.text_layers:
            text["layers"] = trial.suggest_int("text_layers", *space.text_layers)
        if space.cell:
            text["cell"] = trial.suggest_categorical("cell", space.cell)
        if space.pretrain_epochs:
            epochs = trial.suggest_categorical("pretrain_epochs", space.pretrain_epochs)
            text["pretrain_epochs"] = epochs
    elif space.buckets:
        text["buckets"] = trial.suggest_categorical("buckets", space.buckets)
    return text


def imbalance_values(strategy: str) -> dict[str, Any]:
    """An imbalance strategy as resample values: class weights, or an imbalanced-learn method."""
    if strategy == "class_weights":
        return {"method": "none", "class_weights": True}
    return {"method": strategy, "class_weights": False}


def _round(value: float) -> float:
    return float(f"{value:.3g}")
