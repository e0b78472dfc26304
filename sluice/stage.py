"""How a pipeline stage runs: one short-lived process per stage, started by DVC."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path

from sluice import paths
from sluice.atomic import check_writable
from sluice.errors import report_errors

PIPELINE_FILE = Path("dvc.yaml")
TRAINING_STAGES = ("train", "finetune")  # they also keep checkpoints (paths.CHECKPOINTS)


def _freeze_survivors(phase: str, info: dict) -> None:
    """After an older-generation collection, move every survivor to the permanent generation.

    Importing torch, torch._dynamo (pulled in by every torch optimizer), MLflow and SQLAlchemy
    leaves over half a million long-lived objects. CPython's collector walks all of them again
    in each full collection: 1.1-2 s per stage with the default settings, measured on the
    default pipeline (about 2 s of 5.4 for a `sluice predict`). Young objects are still collected
    as usual; objects that have already survived an older-generation pass (modules, classes,
    caches) are never walked again.
    """
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


def short_lived() -> None:
    """Mark this process as short-lived (a stage, a ``sluice`` command): from now on, what
    survives an older-generation collection is frozen (:func:`_freeze_survivors`)."""
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def run_stage(main: Callable[[], object], launch: Callable[[], bool] | None = None) -> None:
    """Run a stage's ``main`` (already wrapped by ``report_errors``) as this process's work.

    First, every folder the stage writes (its outputs in dvc.yaml) is checked to be writable,
    so that a read-only or full disk stops it in one line before hours of work.

    ``launch``, when given, runs next: when it returns True it has done the stage's work in
    other processes (e.g. under torchrun, see sluice.pipeline.launch) and ``main`` is skipped.

    When ``main`` returns or exits, every object still alive is frozen too: the interpreter
    then frees them by reference count at exit instead of also walking them in its final
    garbage collections (about 2 s for a stage that imported torch and MLflow). Outputs are
    written and closed inside ``main``, so nothing is lost; ``atexit`` handlers still run.
    """
    report_errors(_check_outputs_writable)()
    short_lived()
    try:
        if launch is None or not launch():
            main()
    finally:
        gc.freeze()


def _check_outputs_writable() -> None:
    check_writable(output_folders(_stage_name()))


def _stage_name() -> str | None:
    """``train`` for ``python -m stages.train`` (None when run otherwise)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    name = spec.name if spec is not None else ""
    return name.removeprefix("stages.") if name.startswith("stages.") else None


def output_folders(stage: str | None) -> list[Path]:
    """The folders ``stage`` writes into: those of its outputs, metrics and plots in dvc.yaml
    (none when there is no dvc.yaml, or the stage is not in it), and its checkpoints."""
    from sluice.params_yaml import read_yaml

    if stage is None or not PIPELINE_FILE.is_file():
        return []
    declared = (read_yaml(PIPELINE_FILE) or {}).get("stages", {}).get(stage) or {}
    folders = [paths.CHECKPOINTS] if stage in TRAINING_STAGES else []
    for key in ("outs", "metrics", "plots"):
        for out in declared.get(key) or []:
            name = next(iter(out)) if isinstance(out, dict) else str(out)
            folder = Path(name).parent
            if folder not in folders:
                folders.append(folder)
    return folders
