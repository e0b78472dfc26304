"""Progress of long phases: a bar on a terminal, plain lines elsewhere, log records intact."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys

import pandas as pd
import pytest
from rich.console import Console

from sluice import progress
from sluice.errors import _MaskSecrets
from sluice.progress import Phase, log_handler, track, use_console

# Environment variables through which rich (and sluice) decide what stderr is.
DECIDING = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", progress.PLAIN_ENV)


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for name in DECIDING:
        monkeypatch.delenv(name, raising=False)


def terminal() -> Console:
    """A console that is an interactive terminal, writing into a string."""
    return Console(file=io.StringIO(), force_terminal=True, force_interactive=True, width=100)


def not_a_terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=100)


@pytest.fixture
def lines(monkeypatch):
    """What the ``sluice.progress`` logger writes, as a plain stream handler writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("sluice.progress")
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(handler)
    yield out
    logger.removeHandler(handler)


def test_a_terminal_shows_a_bar_with_counts_and_fields_and_no_log_lines(lines):
    with use_console(terminal()) as con, Phase("train base", 3, "epochs") as phase:
        phase.advance(loss=0.5, val_f1=0.75)
        phase.advance(loss=0.25, val_f1=0.875)
        progress._display.refresh()  # as rich's own clock does, four times a second
    shown = con.file.getvalue()
    assert "train base" in shown and "2/3 epochs" in shown
    assert "loss 0.25, val f1 0.875" in shown
    assert "\r" in shown or "\x1b[" in shown  # drawn, then erased: the bar is transient
    assert lines.getvalue() == ""


def test_off_a_terminal_a_phase_is_plain_lines_from_start_to_end(lines):
    with use_console(not_a_terminal()) as con, Phase("train base", 30, "epochs") as phase:
        for epoch in range(1, 31):
            phase.update(epoch, loss=1 / epoch)
    written = lines.getvalue()
    assert "\r" not in written and "\x1b[" not in written
    assert con.file.getvalue() == ""
    first, *middle, last = written.splitlines()
    assert first == "train base: started, 30 epochs"
    assert middle == []  # a quick phase: no line between (at most one every 10 s)
    assert last.startswith("train base: done, 30/30 epochs in ")
    assert last.endswith(", loss 0.03333")


def test_a_running_phase_writes_a_line_when_the_interval_has_passed(lines, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    with use_console(not_a_terminal()), Phase("predict big.csv", unit="rows") as phase:
        phase.advance(50_000)
        phase.advance(25_000)
    start, first, second, end = lines.getvalue().splitlines()
    assert start == "predict big.csv: started"  # no total: the rows are counted as they come
    assert first.startswith("predict big.csv: 50,000 rows, ") and first.endswith(" s")
    assert second.startswith("predict big.csv: 75,000 rows, ")
    assert end.startswith("predict big.csv: done, 75,000 rows in ")


def test_a_failed_phase_says_where_it_stopped(lines):
    phase = Phase("resample gan", 10, "steps")
    with use_console(not_a_terminal()), pytest.raises(ValueError), phase:
        phase.advance(4)
        raise ValueError("boom")
    assert lines.getvalue().splitlines()[-1].startswith("resample gan: stopped at 4/10 steps after")


def test_plain_lines_on_a_terminal_when_asked(lines, monkeypatch):
    monkeypatch.setenv(progress.PLAIN_ENV, "plain")
    with use_console(terminal()) as con:
        assert not progress.interactive()
        assert isinstance(log_handler(), logging.StreamHandler)
        list(track(range(2), "evaluate: bootstrap", unit="models"))
    assert con.file.getvalue() == ""
    assert lines.getvalue().splitlines()[0] == "evaluate: bootstrap: started, 2 models"


def test_track_yields_every_item_and_a_silent_phase_writes_nothing(lines):
    with use_console(not_a_terminal()):
        assert list(track(iter("abc"), "letters")) == ["a", "b", "c"]
        with Phase("predict x.csv", unit="rows", show=False) as phase:
            phase.advance(10)
    assert lines.getvalue().splitlines()[-1].startswith("letters: done, 3 in ")
    assert "predict" not in lines.getvalue()


def test_a_log_record_during_a_live_bar_is_printed_whole():
    logger = logging.getLogger("sluice.test_progress.live")
    logger.propagate = False
    message = "epoch 7: early stopping watches val loss [best 0.1234], " + "x" * 120
    with use_console(terminal()) as con:
        handler = log_handler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        try:
            with Phase("train base", 10, "epochs") as phase:
                phase.advance()
                logger.warning(message)
                phase.advance()
        finally:
            logger.removeHandler(handler)
    shown = con.file.getvalue()
    assert message + "\n" in shown  # longer than the console, yet one unbroken line
    assert "train base" in shown.split(message)[1]  # the bar is drawn again below it


def test_secrets_stay_masked_through_the_terminal_handler():
    logger = logging.getLogger("sluice.test_progress.secrets")
    logger.propagate = False
    with use_console(terminal()) as con:
        handler = log_handler()
        handler.addFilter(_MaskSecrets())
        logger.addHandler(handler)
        try:
            with Phase("tune", 2, "trials"):
                logger.warning("study at %s", "postgresql://u:hunter2@127.0.0.1/db")
        finally:
            logger.removeHandler(handler)
    assert "postgresql://u:***@127.0.0.1/db" in con.file.getvalue()
    assert "hunter2" not in con.file.getvalue()


def test_a_command_on_a_terminal_logs_through_rich_with_secrets_masked():
    """A real process whose stderr is a pseudo-terminal: report_errors installs the rich
    handler, the bar is drawn, and the log line keeps its text, password masked."""
    code = """
import logging
from sluice.errors import report_errors
from sluice.progress import Phase

@report_errors
def main():
    assert type(logging.getLogger().handlers[0]).__name__ == "_ConsoleHandler"
    with Phase("train base", 2, "epochs") as phase:
        phase.advance()
        logging.getLogger("sluice.x").info("tracking at %s", "http://u:hunter2@127.0.0.1:1")

main()
"""
    env = {k: v for k, v in os.environ.items() if k not in DECIDING}
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=follower, env={**env, "TERM": "xterm"},
    )  # fmt: skip
    os.close(follower)
    shown, data = b"", b"-"
    while data and select.select([leader], [], [], 60)[0]:  # nothing for 60 s: a hang
        try:
            data = os.read(leader, 4096)
        except OSError:  # the pseudo-terminal closed: the process is gone
            data = b""
        shown += data
    os.close(leader)
    assert proc.wait(timeout=60) == 0, shown.decode(errors="replace")
    text = shown.decode()
    assert "tracking at http://u:***@127.0.0.1:1" in text and "hunter2" not in text
    assert "train base" in text and "\x1b[" in text


def test_a_stage_with_stderr_piped_writes_plain_lines(tmp_path):
    """python -m stages.clean on a CSV, stderr not a terminal: progress lines, no control."""
    from conftest import make_project

    project = make_project(
        tmp_path / "proj", params={"data": {"path": "data/raw/t.csv", "target": "target"}}
    )
    table = pd.DataFrame({"a": range(60), "b": ["x", "y", "z"] * 20, "target": ["p", "q"] * 30})
    table.to_csv(project.path / "data/raw/t.csv", index=False)
    for name in DECIDING:
        project.env.pop(name, None)
    result = project.stage("clean")
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr
    lines = result.stderr.splitlines()
    assert "clean data/raw/t.csv: type columns: started, 2 columns" in lines
    assert any(line.startswith("clean data/raw/t.csv: type columns: done, 2/2") for line in lines)
