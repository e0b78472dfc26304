"""What a promotion or a rollback writes to the registry, and in which order.

Each returns its history entry and its writes (:class:`sluice.tracking.writes.Write`): first the
history entry, the record that makes a move undoable (a tag on the version the move points the
alias at, with the description's table of the latest moves); then the gate's tags on the version;
last the ``champion`` alias, the one write users see. The entry is checked against what a registry
tag keeps before any write is made.
"""

from __future__ import annotations

import json
from typing import Any

from sluice.errors import SluiceError
from sluice.evaluation.gate import Verdict
from sluice.tracking.history import check_entry_fits
from sluice.tracking.registry import (
    RegistryState,
    alias_write,
    entry_writes,
    last_promotion,
    new_entry,
    version_tag_writes,
)
from sluice.tracking.writes import Write

CHAMPION = "champion"


def promotion_writes(
    name: str, state: RegistryState, version, verdict: Verdict, force: bool, reason: str
) -> tuple[dict[str, Any], list[Write]]:
    """The history entry of this gate, and the writes that record it (and move the alias)."""
    cand, moved = str(version.version), verdict.passed or force
    record = {
        "action": "promote" if moved else "refused",
        "verdict": verdict.to_dict(),
        "forced": force,
        "reason": reason,
    }
    entry = new_entry(state, CHAMPION, cand, record if moved else {"moved": False, **record})
    check_entry_fits(entry)
    tags = _verdict_tags(verdict, entry, force)
    gate_tags = version_tag_writes(name, cand, tags, version.tags)
    writes = [*entry_writes(name, state, entry), *gate_tags]
    if moved:
        writes.append(alias_write(name, CHAMPION, cand, state.aliases.get(CHAMPION)))
    return entry, writes


def rollback_writes(
    name: str, state: RegistryState, last: dict[str, Any], undone, reason: str
) -> tuple[dict[str, Any], list[Write]]:
    """The history entry of a rollback of ``last``, and the writes that record and make it."""
    record = {
        "action": "rollback",
        "undoes": last["seq"],
        "reason": reason or f"rollback of promotion #{last['seq']}",
    }
    entry = new_entry(state, CHAMPION, last["from"], record)
    check_entry_fits(entry)
    tags = {"sluice.rolled_back_by": entry["seq"]}
    return entry, [
        *entry_writes(name, state, entry),
        *version_tag_writes(name, last["to"], tags, undone.tags),
        alias_write(name, CHAMPION, last["from"], last["to"]),
    ]


def undoable_promotion(name: str, state: RegistryState) -> dict[str, Any]:
    """The promotion a rollback undoes, checked against the registry's current champion."""
    last = last_promotion(state.history, CHAMPION)
    if last is None:
        raise SluiceError(
            f"no promotion of {name} to roll back: the history has no champion moves "
            "(see `sluice history`)"
        )
    if last["from"] is None:
        raise SluiceError(
            f"version {last['to']} was the first champion of {name}; there is no earlier "
            "version to roll back to (promote another one with `sluice promote --force`)"
        )
    current = state.aliases.get(CHAMPION)
    if current != last["to"]:
        raise SluiceError(
            f"the champion of {name} is version {current}, but the last recorded promotion "
            f"(#{last['seq']}) set version {last['to']}: the alias was moved outside sluice; "
            "use `sluice promote --version <v> --force` to set it explicitly"
        )
    return last


def _verdict_tags(verdict: Verdict, entry: dict[str, Any], force: bool) -> dict[str, Any]:
    """Tags on the candidate version: the gate's decision and numbers, and the history entry."""
    tags = {
        "sluice.gate.passed": str(verdict.passed).lower(),
        "sluice.gate.forced": str(force).lower(),
        "sluice.gate.verdict": json.dumps(verdict.to_dict()),
        "sluice.gate.history_seq": entry["seq"],
    }
    if entry.get("moved", True):
        tags["sluice.promoted_at"] = entry["time"]
    return tags
