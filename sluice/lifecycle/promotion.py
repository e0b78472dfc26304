"""The model lifecycle: gated promotion and rollback of ``champion``.

Both run under the registry lock (:mod:`sluice.tracking.lock`), so concurrent callers see each
other's moves: the champion is always the winner of a gate it actually passed against the
champion of that moment, and every move (or refused attempt) is one history entry in the registry.

Everything that can be checked is checked before the first write (the reason's length against
what a registry tag keeps). The writes then go in this order: the history entry (what makes a
move undoable), the candidate's gate tags, and last the ``champion`` alias; if one fails, the
earlier ones are undone (:func:`sluice.tracking.writes.apply_writes`), so a failure leaves the
registry as it was, or says in its one line what could not be undone. What is written is built in
:mod:`sluice.lifecycle.records`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from sluice import paths
from sluice.config import PromoteConfig
from sluice.config.evaluate import LatencyRepeats
from sluice.errors import SluiceError
from sluice.evaluation.gate import Verdict, decide
from sluice.lifecycle.records import (
    CHAMPION,
    promotion_writes,
    rollback_writes,
    undoable_promotion,
)
from sluice.tracking.lock import is_refusal, mlflow_cause, registry_lock
from sluice.tracking.registry import read_state, require_model
from sluice.tracking.registry_io import load_registered, resolve_version
from sluice.tracking.writes import apply_writes

if TYPE_CHECKING:
    from sluice.model.bundle import Classifier

log = logging.getLogger(__name__)

CHALLENGER = "challenger"


@dataclass(frozen=True)
class Outcome:
    """What ``promote`` did: ``promoted``, the verdict (None if no gate ran) and the entry."""

    promoted: bool
    candidate: str
    champion: str | None
    verdict: Verdict | None
    entry: dict[str, Any] | None
    note: str = ""


def read_test_split() -> tuple[pd.DataFrame, str]:
    """The current test split and its label column (from the clean stage's report)."""
    from sluice.io import read_json, read_table

    target = read_json(paths.CLEAN_REPORT)["target"]
    return read_table(paths.SPLITS["test"]), target


def model_ref(ref: str) -> str:
    """``7`` -> ``7``; ``champion`` -> ``@champion``; ``models:/...`` and ``@x`` unchanged."""
    ref = ref.strip()
    if ref.isdigit() or ref.startswith(("models:/", "@")):
        return ref
    return f"@{ref}"


def promote(
    name: str,
    cfg: PromoteConfig,
    test: pd.DataFrame,
    target: str,
    candidate: str = CHALLENGER,
    force: bool = False,
    reason: str = "",
    seed: int = 0,
) -> Outcome:
    """Move ``champion`` to ``candidate`` if it passes the gate on ``test`` (or if forced).

    The gate's verdict is recorded either way: as a history entry and as tags on the candidate,
    written (and undone on failure) before the alias moves, the last write.
    """
    with _registry_reads(name):
        require_model(name)
        with registry_lock(name) as lease:
            version = resolve_version(model_ref(candidate), name)
            if version.name != name:
                raise SluiceError(f"{candidate} is a version of {version.name}, not of {name}")
            state = read_state(name)
            cand, champ = str(version.version), state.aliases.get(CHAMPION)
            if cand == champ:
                note = f"version {cand} is already the champion of {name}; nothing to do"
                return Outcome(False, cand, champ, None, None, note)
            verdict = _judge(name, cand, champ, cfg, test, target, seed, force)
            entry, writes = promotion_writes(name, state, version, verdict, force, reason)
            lease.ensure()
            apply_writes(writes, f"promotion of {name} version {cand}")
    log.debug("gate for %s version %s vs %s: %s", name, cand, champ, verdict.reasons)
    return Outcome(entry.get("moved", True), cand, champ, verdict, entry)


def rollback(name: str, reason: str = "") -> dict[str, Any]:
    """Move ``champion`` back to the version the newest not-yet-undone promotion replaced.

    Returns the history entry of the rollback; raises SluiceError when there is nothing to
    roll back to, or when the alias was moved outside sluice since the last recorded move.
    """
    with _registry_reads(name):
        require_model(name)
        with registry_lock(name) as lease:
            state = read_state(name)
            last = undoable_promotion(name, state)
            resolve_version(f"{name}/{last['from']}", name)  # still registered?
            undone = resolve_version(f"{name}/{last['to']}", name)
            entry, writes = rollback_writes(name, state, last, undone, reason)
            lease.ensure()
            apply_writes(writes, f"rollback of {name} to version {last['from']}")
    return entry


@contextmanager
def _registry_reads(name: str) -> Iterator[None]:
    """A registry read that fails (a server error) becomes one line; nothing was written yet.

    Refusals (HTTP 401/403) pass through for the CLI, which names the login and what it lacks.
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if is_refusal(exc):
            raise
        raise SluiceError(
            f"reading the registry of {name} failed ({mlflow_cause(exc)}); nothing was changed, "
            "try again"
        ) from None


def _judge(
    name: str,
    cand: str,
    champ: str | None,
    cfg: PromoteConfig,
    test: pd.DataFrame,
    target: str,
    seed: int,
    force: bool,
) -> Verdict:
    """Score candidate (and champion) on the same test rows and run the gate (with the
    candidate's cost when ``promote.budgets`` names any)."""
    from sluice.model.preprocess import encode_labels

    challenger, _ = load_registered(f"{name}/{cand}", name)
    y_true = encode_labels(test[target], challenger.classes, str(paths.SPLITS["test"]))
    prob_b = challenger.predict_proba(test, str(paths.SPLITS["test"]))
    prob_a = None
    if champ is not None:
        champion, _ = load_registered(f"{name}/{champ}", name)
        if champion.classes == challenger.classes:
            prob_a = champion.predict_proba(test, str(paths.SPLITS["test"]))
        elif not force:
            raise SluiceError(
                f"champion (version {champ}) predicts classes {champion.classes}, version "
                f"{cand} predicts {challenger.classes}: they cannot be compared; promote "
                "with --force if the new classes are intended"
            )
    cost = challenger_cost(challenger, test, cfg.budgets)
    return decide(y_true, prob_a, prob_b, cfg, seed, cost)


def challenger_cost(
    clf: Classifier, test: pd.DataFrame, budgets: dict[str, float]
) -> dict[str, float] | None:
    """The cost record training kept in the bundle; a bundle without one (a model trained
    before costs were measured) is measured now, on the test rows. None without budgets.

    The record is read from the bundle, not from the registry: it is trusted because
    ``load_registered`` refused the bundle unless it matches the digest recorded at
    registration (which covers the record)."""
    if not budgets:
        return None
    recorded = clf.spec.get("cost")
    if recorded:
        return recorded
    from sluice.evaluation.cost import cost_record

    log.info("version without a cost record: measuring its latency and size on the test rows")
    return cost_record(
        clf.predict_proba,
        test[clf.feature_columns],
        LatencyRepeats().by_batch(),  # evaluate.latency_repeats' defaults
        bundle_bytes=_bundle_bytes(clf),
        param_count=sum(p.numel() for p in clf.net.parameters()),
    )


def _bundle_bytes(clf: Classifier) -> int:
    """The size of the bundle's files as save_bundle writes them now (written to a scratch
    folder: an older bundle's own files, in another format, would differ in size)."""
    import tempfile
    from pathlib import Path

    from sluice.model.bundle import save_bundle

    with tempfile.TemporaryDirectory(prefix="sluice-size-") as tmp:
        bundle = Path(tmp) / "bundle"
        save_bundle(bundle, clf.net, clf.spec)
        return sum(f.stat().st_size for f in bundle.iterdir() if f.is_file())
