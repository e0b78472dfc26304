"""How `make test` (``pytest -n 2 --dist loadscope``) shares the suite between its workers.

pytest-xdist's ``loadscope`` hands each worker whole modules, so a module's fixtures are built
once. Two refinements, both about the session-scoped fixtures a folder's conftest shares:

- Every module of ``tests/team``, ``tests/lifecycle`` and ``tests/robustness`` is one unit of
  work: the team's PostgreSQL, MLflow and S3 servers start once per run, the lifecycle's
  trained networks and template store are built once, and so is the messy pipeline the
  robustness checks read, instead of once on every worker that runs one of their modules.
- Units start longest first (those folders, then the end-to-end modules, then the unit tests),
  so the many short unit-test modules fill the end of the run on both workers instead of one
  long module running alone at the end.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Folders whose modules share session fixtures: each is one unit, in this order.
SHARED_FOLDERS = ("tests/team", "tests/robustness", "tests/lifecycle")
LATER_FOLDERS = ("tests/e2e", "tests/unit")  # one unit per module, in this order


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its folder for :data:`SHARED_FOLDERS`, else its
    module (``tests/e2e/test_tune.py::test_x`` -> ``tests/e2e/test_tune.py``)."""
    module = nodeid.split("::", 1)[0]
    return next((f for f in SHARED_FOLDERS if module.startswith(f"{f}/")), module)


def rank(nodeid: str) -> int:
    """Where a test's unit goes in the queue: lower first."""
    for i, folder in enumerate((*SHARED_FOLDERS, *LATER_FOLDERS)):
        if nodeid.startswith(f"{folder}/"):
            return i
    return len(SHARED_FOLDERS) + len(LATER_FOLDERS)


class UnitScheduling(LoadScopeScheduling):
    """``loadscope`` over the units of :func:`unit_of`, queued in collection order (which
    :func:`order` sets the same on every worker)."""

    def __init__(self, config, log=None) -> None:
        config.option.loadscopereorder = False  # keep the order of order(), not by test count
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)


def order(items: list) -> None:
    """Sort collected tests by :func:`rank`, keeping their order within a rank (stable)."""
    items.sort(key=lambda item: rank(item.nodeid))
