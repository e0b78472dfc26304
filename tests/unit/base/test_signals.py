"""Ctrl-C and SIGTERM in a stage: the exception unwinds the stage, and one that CPython swallowed
(raised inside a finaliser, "Exception ignored in ...") is raised again by the next loop step."""

import gc
import os
import signal
import time

import pytest

from sluice.errors import EXIT_TERMINATED, raise_pending_signal, report_errors


class _SignalsWhileCollected:
    """An object whose finaliser receives ``sig``: the handler's exception is raised inside
    ``__del__``, where CPython prints it and goes on."""

    def __init__(self, sig: int):
        self.sig = sig

    def __del__(self):
        os.kill(os.getpid(), self.sig)
        time.sleep(0.05)  # the handler runs here, inside the finaliser


@pytest.fixture(autouse=True)
def python_default_handlers():
    """Python's own handlers, as a stage process starts with them (another test in this
    process may have left its own), restored afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _swallow_then_step(sig: int, steps: list[str]) -> None:
    obj = _SignalsWhileCollected(sig)
    del obj
    gc.collect()
    steps.append("went on")  # the exception did not reach us: CPython swallowed it
    raise_pending_signal()  # what the training loop does once per epoch
    steps.append("trained on")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, EXIT_TERMINATED, "terminated")],
)
def test_a_signal_swallowed_in_a_finaliser_stops_the_stage_at_the_next_step(
    sig, code, said, capsys
):
    seen: list[str] = []

    @report_errors
    def stage():
        _swallow_then_step(sig, seen)

    with pytest.raises(SystemExit) as exc:
        stage()
    assert exc.value.code == code
    assert seen == ["went on"]  # swallowed once, then stopped at the next step
    assert said in capsys.readouterr().err
    # The handlers are restored and nothing stays pending after the stage.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    raise_pending_signal()


def test_outside_a_stage_nothing_is_pending():
    raise_pending_signal()
