"""The tune stage's study and its choice: whether it runs, its name, and the file it leaves.

A choice is a mapping of params sections, ``{"resample": {...}, "train": {...}}`` (nested
ones such as ``train.text`` as mappings), that ``sluice.tuned.apply_tuned`` lays over
params.yaml; the stage writes it to ``reports/tuned.yaml`` (a DVC params file of resample,
train and finetune). What a trial suggests is ``sluice.tuning.space``. Nothing here
imports torch, MLflow or Optuna, so a skipped study costs no more than reading params.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from sluice.atomic import atomic_path, outputs_together
from sluice.config import Params
from sluice.config.tune import TEXT_FAMILIES
from sluice.io import write_json
from sluice.tuned import TUNED_PATH, TUNED_SECTIONS

log = logging.getLogger(__name__)

TUNE_REPORT = Path("reports/tune.json")  # the study's summary (DVC metrics)


def skip_reason(params: Params, feature_types: dict[str, str]) -> str | None:
    """Why the study does not run (None: it runs)."""
    if params.tune.trials == 0:
        return "tune.trials is 0"
    space = params.tune.space.model
    if builds_cnn(params.train.model, feature_types) and space is not None and "cnn" not in space:
        # Image rows get the CNN, whose defaults are tuned by hand; a CNN trial costs
        # seconds, so a study over images is opt-in.
        return "train builds a CNN for these image rows and tune.space.model has no cnn"
    text = "text" in feature_types.values()
    if text and space is not None and not set(space) & set(TEXT_FAMILIES):
        # The same for text: an ngram trial costs as much as the whole default pipeline does on
        # a table without text, and on the benchmark's text tables the defaults held up.
        return "the table has a text column and tune.space.model lists no text family"
    return None


def builds_cnn(model: str, feature_types: dict[str, str]) -> bool:
    """Whether ``train.model`` becomes the CNN for these columns: ``choose_arch`` of
    sluice.model.nets, restated without torch so that a skipped study stays cheap (a test holds
    the two together). A table with a text column never gets the CNN."""
    if "text" in feature_types.values():
        return False
    n = len(feature_types)
    image_rows = math.isqrt(n) ** 2 == n and n >= 16
    numeric = all(t == "numeric" for t in feature_types.values())
    return model == "cnn" or (model == "auto" and image_rows and numeric)


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
    can track each section) and the study's report, together (both or neither)."""

    lines = [f"# {line}" for line in note.splitlines()]
    for name in TUNED_SECTIONS:
        values = choice.get(name, {})
        lines.append(f"{name}:" if values else f"{name}: {{}}")
        lines += [f"  {key}: {_flow(value)}" for key, value in values.items()]
    with outputs_together():
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
