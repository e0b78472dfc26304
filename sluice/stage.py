"""How a pipeline stage runs: one short-lived process per stage, started by DVC."""

from __future__ import annotations

import gc
from collections.abc import Callable

# Importing torch, torch._dynamo (pulled in by every torch optimizer), MLflow and SQLAlchemy
# leaves about a million long-lived objects. With CPython's default thresholds (700, 10, 10) the
# collector walks all of them again and again: 1.1-1.8 s per stage, measured on the default
# pipeline. Collecting the young generation every 50,000 allocations keeps cycles bounded and
# skips most of those walks.
GC_THRESHOLDS = (50_000, 20, 20)


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's ``main`` (already wrapped by ``report_errors``) as this process's work.

    When ``main`` returns or exits, every object still alive is frozen: the interpreter then
    frees them by reference count at exit instead of also walking them in its final garbage
    collections (about 2 s for a stage that imported torch and MLflow). Outputs are written
    and closed inside ``main``, so nothing is lost; ``atexit`` handlers still run.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        main()
    finally:
        gc.freeze()
