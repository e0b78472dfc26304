"""How a pipeline stage runs: one short-lived process per stage, started by DVC."""

from __future__ import annotations

import gc
from collections.abc import Callable


def _freeze_survivors(phase: str, info: dict) -> None:
    """After an older-generation collection, move every survivor to the permanent generation.

    Importing torch, torch._dynamo (pulled in by every torch optimizer), MLflow and SQLAlchemy
    leaves over half a million long-lived objects. CPython's collector walks all of them again
    in each full collection: 1.1-2 s per stage with the default settings, measured on the
    default pipeline. Young objects are still collected as usual; objects that have already
    survived an older-generation pass (modules, classes, caches) are never walked again.
    """
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


def run_stage(main: Callable[[], object], launch: Callable[[], bool] | None = None) -> None:
    """Run a stage's ``main`` (already wrapped by ``report_errors``) as this process's work.

    ``launch``, when given, runs first: when it returns True it has done the stage's work in
    other processes (e.g. under torchrun, see sluice.pipeline.launch) and ``main`` is skipped.

    When ``main`` returns or exits, every object still alive is frozen too: the interpreter
    then frees them by reference count at exit instead of also walking them in its final
    garbage collections (about 2 s for a stage that imported torch and MLflow). Outputs are
    written and closed inside ``main``, so nothing is lost; ``atexit`` handlers still run.
    """
    gc.callbacks.append(_freeze_survivors)
    try:
        if launch is None or not launch():
            main()
    finally:
        gc.freeze()
