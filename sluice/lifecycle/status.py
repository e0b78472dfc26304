"""What ``sluice status`` shows, as plain data: the model's aliases and one entry per version.

The table and ``sluice status --json`` both come from :func:`model_status`, so they show the
same thing.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

METRICS = ("roc_auc", "f1_macro", "balanced_accuracy", "accuracy", "ece")
GATE = {"true": "passed", "false": "refused"}  # the sluice.gate.passed tag


def model_status(name: str) -> dict[str, Any]:
    """``{"model", "aliases", "versions"}`` of registered model ``name``, newest version first.

    Raises:
        SluiceError: no registered model is called ``name``.
    """
    from sluice.tracking.registry import aliases, list_versions, require_model

    require_model(name)
    alias_map = aliases(name)
    versions = [version_entry(v, alias_map) for v in list_versions(name)]
    return {"model": name, "aliases": alias_map, "versions": versions}


def version_entry(version: Any, alias_map: dict[str, str]) -> dict[str, Any]:
    """One registered version (an MLflow ModelVersion): its aliases, role, creation time (ISO
    8601, local time), test metrics (None where missing), decision rule, last gate verdict
    ("passed", "refused" or None, and whether it was forced) and run id."""
    tags, number = version.tags or {}, str(version.version)
    created = datetime.fromtimestamp(version.creation_timestamp / 1000).astimezone()
    return {
        "version": number,
        "aliases": sorted(alias for alias, held in alias_map.items() if held == number),
        "role": tags.get("sluice.role"),
        "created": created.isoformat(timespec="seconds"),
        "metrics": {m: _number(tags.get(f"test_{m}")) for m in METRICS},
        "decision": tags.get("sluice.decision"),
        "gate": GATE.get(tags.get("sluice.gate.passed", "")),
        "forced": tags.get("sluice.gate.forced") == "true",
        "run_id": version.run_id,
    }


def _number(text: str | None) -> float | None:
    """A metric tag as a number; None when absent, not a number or not finite (JSON has no NaN)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
