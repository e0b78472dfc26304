"""The registered model's description as the UI shows alias moves: a Markdown table of the latest
ones, newest first, below whatever people wrote there themselves.

The section starts at :data:`HEADING` and runs to the end of the description; it is rewritten on
each move, text above it is kept as it is. It is bounded to what the store keeps: MLflow's SQL
schema declares ``registered_models.description`` as VARCHAR(5000) (SqlRegisteredModel in
mlflow/store/model_registry/dbmodels/models.py; PostgreSQL refuses more, SQLite keeps it), so the
table holds at most :data:`MAX_ROWS` rows, fewer when the description would grow past
:data:`DESCRIPTION_LIMIT`, and a reason is cut to :data:`REASON_CHARS` characters. Every entry,
in full, is in the version tags (:mod:`sluice.tracking.history`); ``sluice history`` reads those.
"""

from __future__ import annotations

import re
from typing import Any

HEADING = "### Alias moves, recorded by sluice"
DESCRIPTION_LIMIT = 5000
MAX_ROWS = 20
REASON_CHARS = 60
COLUMNS = ("#", "time", "alias", "action", "from", "to", "gate", "user", "reason")
_ROW_SEQ = re.compile(r"^\|\s*(\d+)\s*\|", re.MULTILINE)
_MARKDOWN = re.compile(r"([\\`*_\[\]|#])")


def split_description(description: str | None) -> tuple[str, str]:
    """(the people's text, sluice's section) of a registered model's description."""
    text = description or ""
    start = text.find(HEADING)
    if start < 0:
        return text.rstrip(), ""
    return text[:start].rstrip(), text[start:]


def table_seqs(description: str | None) -> list[int]:
    """The sequence numbers of the moves sluice's section lists."""
    return [int(seq) for seq in _ROW_SEQ.findall(split_description(description)[1])]


def render_description(description: str | None, entries: list[dict[str, Any]]) -> str:
    """``description`` with sluice's section rewritten to list the latest of ``entries``
    (oldest first, as ``sluice history`` gives them) in as many rows as fit the limit."""
    people = split_description(description)[0]
    rows = [_row(e) for e in reversed(entries[-MAX_ROWS:])]
    for shown in range(len(rows), 0, -1):
        text = _compose(people, rows[:shown], len(entries))
        if len(text) <= DESCRIPTION_LIMIT:
            return text
    return people  # not even one row fits beside the people's text: leave it alone


def _compose(people: str, rows: list[str], total: int) -> str:
    about = (
        f"The latest {len(rows)} of {total} recorded moves, newest first; `sluice history` "
        "lists every one. sluice rewrites this section on each move and keeps the text above it."
    )
    header = f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}"
    section = "\n".join([HEADING, "", about, "", header, *rows])
    return f"{people}\n\n{section}" if people else section


def _row(entry: dict[str, Any]) -> str:
    cells = [entry.get(k) for k in ("seq", "time", "alias", "action", "from", "to")]
    cells += [_gate(entry), entry.get("user"), _cut(str(entry.get("reason") or ""))]
    return f"| {' | '.join(_cell(c) for c in cells)} |"


def _gate(entry: dict[str, Any]) -> str:
    verdict = entry.get("verdict")
    if not verdict:
        return ""
    text = "passed" if verdict.get("passed") else "refused"
    return f"{text}, forced" if entry.get("forced") else text


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_CHARS else f"{text[: REASON_CHARS - 1]}…"


def _cell(value: Any) -> str:
    """One table cell: user-given text cannot end the cell, the row or add markup."""
    text = " ".join(str(value).split()) if value not in (None, "") else "-"
    text = _MARKDOWN.sub(r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")
