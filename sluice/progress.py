"""Progress of long phases on stderr: a transient rich bar on a terminal, plain log lines elsewhere.

On a terminal (stderr is one, and rich finds it interactive: not ``TERM=dumb``), a phase is a
row of one shared rich progress display that disappears when the phase ends; phases inside
phases (an ensemble member inside training) are rows under it. Log records go through the same
rich console (:func:`log_handler`), above the bars, so a line never tears a bar.

Anywhere else (CI logs, ``dvc exp run --queue``, a captured subprocess) a phase is plain log
lines of the ``sluice.progress`` logger: one when it starts, at most one every
:data:`LINE_EVERY_S` seconds while it advances, and one with the totals when it ends; no
carriage return, no escape code. ``SLUICE_PROGRESS=plain`` asks for these lines on a terminal
too. Colours follow rich's rules (``NO_COLOR``, ``FORCE_COLOR``, ``TTY_INTERACTIVE``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

log = logging.getLogger(__name__)

PLAIN_ENV = "SLUICE_PROGRESS"  # "plain": log lines even on a terminal
LINE_EVERY_S = 10.0  # off a terminal, a running phase writes a line at most this often

T = TypeVar("T")

_lock = threading.RLock()
_console: Console | None = None
_display: Progress | None = None  # the rows of the live phases, while any is live


def console() -> Console:
    """The rich console on stderr that bars and (on a terminal) log records share."""
    global _console
    with _lock:
        if _console is None:
            from rich.console import Console

            _console = Console(stderr=True)
        return _console


@contextmanager
def use_console(replacement: Console) -> Iterator[Console]:
    """Within the block, phases and the console log handler write to ``replacement`` (e.g. a
    ``Console(file=io.StringIO(), force_terminal=True)`` in a test)."""
    global _console
    with _lock:
        previous, _console = _console, replacement
    try:
        yield replacement
    finally:
        with _lock:
            _console = previous


def interactive() -> bool:
    """Whether phases show a bar (True) or write plain log lines (False)."""
    if os.environ.get(PLAIN_ENV, "").lower() == "plain":
        return False
    shared = console()
    return shared.is_interactive and shared.is_terminal


class _ConsoleHandler(logging.Handler):
    """Each record as one line through the shared console, so it prints above live bars.

    Only the message, as a plain stream handler writes it: no time, level or path columns, no
    markup or highlighting, and no wrapping (a long line stays one line)."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        try:
            console().print(Text(self.format(record)), highlight=False, soft_wrap=True)
        except Exception:  # as logging.StreamHandler: a broken stream is not the caller's error
            self.handleError(record)


def log_handler() -> logging.Handler:
    """The handler for the root logger: through the rich console on a terminal, else a plain
    stream handler on stderr. The caller sets its format and filters."""
    return _ConsoleHandler() if interactive() else logging.StreamHandler(sys.stderr)


class Phase:
    """A long phase's progress, as a context manager: ``with Phase("train base", 30, "epochs")
    as phase: ... phase.advance(loss=0.31)``.

    Args:
        description: what runs, first on its bar or line (``train base``).
        total: steps in all; None when unknown (the bar then pulses and counts).
        unit: what a step is (``epochs``, ``rows``).
        show: False makes the phase silent (e.g. ``sluice predict --no-progress``).
    """

    def __init__(
        self, description: str, total: float | None = None, unit: str = "", show: bool = True
    ) -> None:
        self.description, self.total, self.unit, self.show = description, total, unit, show
        self.completed: float = 0
        self.fields: dict[str, Any] = {}
        self._task: Any = None  # the row's id on the shared display (terminal)
        self._started = self._lined = 0.0

    def __enter__(self) -> Phase:
        self._started = self._lined = time.monotonic()
        if not self.show:
            return self
        if interactive():
            self._task = _add_row(self)
        else:
            log.info("%s", self._line(start=True))
        return self

    def advance(self, steps: float = 1, **fields: Any) -> None:
        """``steps`` more done; ``fields`` (e.g. ``loss=0.31``) shown after the counts."""
        self.update(self.completed + steps, **fields)

    def update(self, completed: float | None = None, **fields: Any) -> None:
        """Set the steps done (None: unchanged) and the ``fields`` shown after the counts."""
        if completed is not None:
            self.completed = completed
        self.fields.update(fields)
        if not self.show:
            return
        if self._task is not None:  # about a microsecond: rich redraws on its own clock
            self._push()
        elif time.monotonic() - self._lined >= LINE_EVERY_S:
            self._lined = time.monotonic()
            log.info("%s", self._line())

    def __exit__(self, kind: object, *exc: object) -> None:
        if not self.show:
            return
        if self._task is not None:
            _remove_row(self._task)
            self._task = None
        else:
            log.info("%s", self._line(end=True, failed=kind is not None))

    def _push(self) -> None:
        with _lock:
            if _display is not None:
                shown = {"counts": self._counts(), "info": _fields_text(self.fields)}
                _display.update(self._task, completed=self.completed, **shown)

    def _counts(self) -> str:
        """``12/30 epochs``: the steps done, of how many, and what a step is (nothing for a
        phase that counts nothing)."""
        if self.total is None and not self.completed:
            return ""
        total = "" if self.total is None else f"/{_amount(self.total)}"
        return f"{_amount(self.completed)}{total} {self._unit()}".rstrip()

    def _unit(self) -> str:
        """``1 epoch``, ``2 epochs``: the unit as given, singular for one."""
        one = self.total == 1 or (self.total is None and self.completed == 1)
        return self.unit[:-1] if one and self.unit.endswith("s") else self.unit

    def _line(self, start: bool = False, end: bool = False, failed: bool = False) -> str:
        """One plain line: the phase, then its counts, time and fields."""
        if start:
            planned = "" if self.total is None else f", {_amount(self.total)} {self._unit()}"
            return f"{self.description}: started{planned}".rstrip()
        elapsed = time.monotonic() - self._started
        counts = self._counts()
        if end and failed:
            parts = [f"stopped{f' at {counts}' if counts else ''} after {_duration(elapsed)}"]
        elif end:
            parts = [f"done{f', {counts}' if counts else ''} in {_duration(elapsed)}"]
        else:
            parts = [counts, _duration(elapsed)] if counts else [_duration(elapsed)]
            if self.total and 0 < self.completed < self.total:
                left = elapsed / self.completed * (self.total - self.completed)
                parts.append(f"about {_duration(left)} left")
        if self.fields:
            parts.append(_fields_text(self.fields))
        return f"{self.description}: {', '.join(parts)}"


def track(
    items: Iterable[T], description: str, total: float | None = None, unit: str = ""
) -> Iterator[T]:
    """``items`` one by one inside a :class:`Phase` that advances after each (``total``:
    ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Phase(description, total, unit) as phase:
        for item in items:
            yield item
            phase.advance()


def _add_row(phase: Phase) -> Any:
    """A row for ``phase`` on the shared display, started with the first phase."""
    global _display
    with _lock:
        if _display is None:
            _display = _new_display()
            _display.start()
        return _display.add_task(
            phase.description, total=phase.total, counts=phase._counts(), info=""
        )


def _remove_row(task: Any) -> None:
    """Remove a finished phase's row; the display goes with the last one."""
    global _display
    with _lock:
        if _display is None:
            return
        _display.remove_task(task)
        if not _display.tasks:
            _display.stop()
            _display = None


def _new_display() -> Progress:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(bar_width=30),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        console=console(),
        transient=True,
        refresh_per_second=4,
        redirect_stdout=False,  # stdout is for results (the pipeline's table), never the bar
    )


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _fields_text(fields: dict[str, Any]) -> str:
    """``loss 0.312, val f1 0.874``: floats to 4 significant digits, ``_`` as spaces."""
    shown = (
        f"{name.replace('_', ' ')} {value:.4g}"
        if isinstance(value, float)
        else f"{name.replace('_', ' ')} {value}"
        for name, value in fields.items()
    )
    return ", ".join(shown)
