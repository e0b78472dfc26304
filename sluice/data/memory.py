"""Memory budgets: the estimate of what a step will hold at its peak, checked before the step
starts, so that a table too large for the machine stops with one line (the estimate, the budget
and the setting to change) instead of running until the system kills the process.

Reading a CSV is estimated here; resampling's estimate is in :mod:`sluice.data.smote`.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd
import psutil

from sluice.errors import SluiceError

log = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 22  # the head of a CSV parsed to estimate the memory of the whole
# Peak memory of reading and cleaning a table over its pandas frame's size, measured on the
# built-in tables and a messy table written as CSV (docs/reliability.md): 3.3-4.0 for numbers
# and short strings, 6.0 for long texts (normalised one Python string at a time).
PEAK_FACTOR, TEXT_PEAK_FACTOR, TEXT_CHARS = 4.0, 6.0, 20
BUDGET_SHARE = 0.8  # a budget left null: this share of the memory available now


def memory_budget(max_memory_gb: float | None, key: str) -> tuple[float, str]:
    """The budget in bytes and where it comes from: the setting ``key`` when it is set, else
    ``BUDGET_SHARE`` of the memory available now."""
    if max_memory_gb is not None:
        return max_memory_gb * 1e9, key
    available = psutil.virtual_memory().available
    return BUDGET_SHARE * available, f"{BUDGET_SHARE:.0%} of the {size_text(available)} available"


def estimate_read_memory(path: Path) -> int:
    """Bytes that reading and cleaning ``path`` will hold at the peak, from its size and its
    first ``SAMPLE_BYTES`` parsed: the frame's size per byte of CSV, times ``PEAK_FACTOR``
    (``TEXT_PEAK_FACTOR`` for columns of long strings); at least the file plus its frame (the
    parser holds the file's text while it builds the frame)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    head = head if len(head) == size else head[: head.rfind(b"\n") + 1]
    try:
        sample = pd.read_csv(io.BytesIO(head), low_memory=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        return int(size * (1 + 3 * PEAK_FACTOR))  # cut within a quoted field: 3x, as strings
    if sample.empty:
        return size
    peak = frame = 0.0
    for col in sample.columns:
        values = sample[col]
        nbytes = float(values.memory_usage(index=False, deep=True))
        long = (
            values.dtype.kind not in "biufcmM" and values.astype(str).str.len().mean() >= TEXT_CHARS
        )
        frame, peak = frame + nbytes, peak + nbytes * (TEXT_PEAK_FACTOR if long else PEAK_FACTOR)
    scale = size / len(head)
    return int(max(peak, frame + len(head)) * scale)


def check_read_memory(path: Path, max_memory_gb: float | None) -> None:
    """Refuse in one line a CSV whose estimated peak memory (:func:`estimate_read_memory`) exceeds
    ``max_memory_gb`` (:func:`memory_budget`)."""
    need = estimate_read_memory(path)
    budget, source = memory_budget(max_memory_gb, "data.max_memory_gb")
    if need > budget:
        raise SluiceError(
            f"{path} is {size_text(path.stat().st_size)}; reading and cleaning it needs about "
            f"{size_text(need)} of memory, more than the budget of {size_text(budget)} ({source}); "
            "clean reads the whole table (it does not stream): use a sample of the rows, "
            "drop unneeded columns from the file, or raise data.max_memory_gb"
        )
    log.debug("%s: estimated peak memory %s of %s", path, size_text(need), size_text(budget))


def size_text(nbytes: float) -> str:
    """``1.5 GB``, ``12.3 MB``, ``4.0 kB`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e3:.1f} kB"
