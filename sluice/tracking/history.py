"""Where the record of alias moves lives in the registry, and the writes that keep it.

Each entry (one alias move, or a refused attempt with ``"moved": false``) is a JSON tag
``sluice.move.000001`` ... on the model version the move pointed the alias at (its ``to``): not
in the registered model's own Tags table, and a version tag's value is a TEXT column, bounded
only by MLflow's check (:data:`TAG_VALUE_LIMIT`). ``sluice history`` gathers the entries from
every version and orders them by sequence number. The registered model's description shows the
latest moves as a Markdown table (:mod:`sluice.tracking.history_table`).

Older sluice kept entries as registered-model tags ``sluice.history.000001`` ...; they are read
in place, and the next move migrates them (copies each to a version, then deletes the old tag)
as part of its own writes, so a failure undoes the migration with the move.

Sequence numbers are drawn under the registry lock, one above every number in sight: the
entries and the description's table, so a number stays unique even after the version that held
the newest entry was deleted (which deletes the entries kept on it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sluice.errors import SluiceError
from sluice.tracking.history_table import render_description, table_seqs
from sluice.tracking.writes import Write

MOVE_PREFIX = "sluice.move."
LEGACY_PREFIX = "sluice.history."
# The longest model-version tag value MLflow keeps: its own check allows 100,000 characters
# (MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH in mlflow/utils/validation.py, on a tracking server too);
# the SQL column, model_version_tags.value, is TEXT.
TAG_VALUE_LIMIT = 100_000


@dataclass(frozen=True)
class StoredHistory:
    """A registered model's entries, oldest first, and where each of them is kept."""

    entries: list[dict[str, Any]]
    legacy: dict[str, str]  # old-format tags still on the registered model: key -> JSON
    on_versions: frozenset[int]  # sequence numbers already kept as version tags
    versions: frozenset[str]  # the model's registered versions
    description: str | None
    last_seq: int


def read_stored(model: Any, versions: list[Any]) -> StoredHistory:
    """The history of ``model`` (a RegisteredModel) from its ``versions`` (ModelVersions, with
    their tags) and any old-format tags on the model itself (a version tag wins a tie)."""
    legacy = {k: v for k, v in (model.tags or {}).items() if k.startswith(LEGACY_PREFIX)}
    by_seq = {_seq(k, LEGACY_PREFIX): json.loads(v) for k, v in legacy.items()}
    on_versions = set()
    for version in versions:
        for key, value in (version.tags or {}).items():
            if key.startswith(MOVE_PREFIX):
                on_versions.add(_seq(key, MOVE_PREFIX))
                by_seq[_seq(key, MOVE_PREFIX)] = json.loads(value)
    seen = [*by_seq, *table_seqs(model.description)]
    return StoredHistory(
        entries=[by_seq[seq] for seq in sorted(by_seq)],
        legacy=legacy,
        on_versions=frozenset(on_versions),
        versions=frozenset(str(v.version) for v in versions),
        description=model.description,
        last_seq=max(seen, default=0),
    )


def _seq(key: str, prefix: str) -> int:
    return int(key.removeprefix(prefix))


def check_entry_fits(entry: dict[str, Any]) -> None:
    """Raise SluiceError, before anything is written, if the registry cannot keep ``entry``."""
    size = len(json.dumps(entry))
    if size <= TAG_VALUE_LIMIT:
        return
    reason = str(entry.get("reason", ""))
    keep = max(len(reason) - (size - TAG_VALUE_LIMIT), 0)
    raise SluiceError(
        f"the reason is too long: the history entry would be {size} characters ({len(reason)} "
        f"of them the reason) and a registry tag keeps at most {TAG_VALUE_LIMIT}; shorten the "
        f"reason (--reason) to at most {keep} characters (nothing was changed)"
    )


def history_writes(client, name: str, stored: StoredHistory, entry: dict[str, Any]) -> list[Write]:
    """Record ``entry``: its tag, the migration of old-format tags, the description's table."""
    seq, to = int(entry["seq"]), str(entry["to"])
    writes = [_entry_write(client, name, to, seq, json.dumps(entry), f"history entry #{seq}")]
    writes += _migration_writes(client, name, stored, str(entry["to"]))
    described = render_description(stored.description, [*stored.entries, entry])
    if described != (stored.description or ""):
        writes.append(_description_write(client, name, described, stored.description))
    return writes


def _entry_write(client, name: str, version: str, seq: int, value: str, what: str) -> Write:
    """Tag ``version`` with entry number ``seq`` (its JSON ``value``); undone by deleting it."""
    key = f"{MOVE_PREFIX}{seq:06d}"
    return Write(
        f"{what} (tag {key} of version {version})",
        lambda: client.set_model_version_tag(name, version, key, value),
        lambda: client.delete_model_version_tag(name, version, key),
    )


def _migration_writes(client, name: str, stored: StoredHistory, fallback: str) -> list[Write]:
    """Copy each old-format entry to the version it moved the alias to (``fallback`` when that
    version is gone), then delete the old tags; each undone by the reverse."""
    copies, deletes = [], []
    for key, value in sorted(stored.legacy.items()):
        seq = _seq(key, LEGACY_PREFIX)
        if seq not in stored.on_versions:
            to = str(json.loads(value).get("to"))
            version = to if to in stored.versions else fallback
            copies.append(_entry_write(client, name, version, seq, value, f"moving entry #{seq}"))
        deletes.append(_legacy_delete(client, name, key, value))
    return [*copies, *deletes]


def _legacy_delete(client, name: str, key: str, value: str) -> Write:
    return Write(
        f"old-format history tag {key} of {name}",
        lambda: client.delete_registered_model_tag(name, key),
        lambda: client.set_registered_model_tag(name, key, value),
    )


def _description_write(client, name: str, text: str, previous: str | None) -> Write:
    """Set the description; undone by setting the previous one back."""
    return Write(
        f"description of {name}",
        lambda: client.update_registered_model(name, text),
        lambda: client.update_registered_model(name, previous),
    )
