"""How a stage process (and the `sluice` executable) runs: collector settings, exit status,
frozen objects at exit.

Each check runs in its own interpreter, with collector settings of its own (the test session
sets its own in tests/conftest.py).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _run(body: str) -> subprocess.CompletedProcess:
    code = "import gc, sys\nfrom sluice.stage import run_stage\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_survivors_of_older_collections_are_frozen_and_young_cycles_still_collected():
    result = _run(
        """
        def main():
            before = gc.get_freeze_count()
            kept = [[i] for i in range(10_000)]
            gc.collect(1)
            frozen = gc.get_freeze_count()
            assert frozen >= before + len(kept), (before, frozen)
            a, b = [], []
            a.append(b)
            b.append(a)
            del a, b
            assert gc.collect(0) >= 2  # a fresh cycle is still garbage-collected
            print("ok")

        run_stage(main)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_exit_status_and_output_of_main_are_kept():
    result = _run(
        """
        def main():
            print("written")
            sys.exit(3)

        run_stage(main)
        """
    )
    assert result.returncode == 3
    assert result.stdout.strip() == "written"


def test_the_sluice_executable_freezes_survivors_too(tmp_path):
    """The installed ``sluice`` entry point is a short-lived process like a stage; importing
    its module alone (as in-process tests do) changes nothing."""
    code = textwrap.dedent(
        """
        import gc, sys
        from importlib.metadata import entry_points

        (script,) = entry_points(group="console_scripts", name="sluice")
        main = script.load()
        assert gc.callbacks == [], gc.callbacks  # the import alone installs nothing
        sys.argv = ["sluice", "--help"]
        try:
            main()
        except SystemExit as done:
            assert done.code == 0, done.code
        kept = [[i] for i in range(10_000)]
        gc.collect(1)
        assert gc.get_freeze_count() >= len(kept), gc.get_freeze_count()
        print("ok")
        """
    )
    # Run elsewhere than the checkout, whose build metadata may be older than the installed one.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_the_sluice_executable_completes_its_commands(tmp_path):
    """Shell completion goes through the same entry point (bash's protocol, as typer sets it)."""
    env = {**os.environ, "_SLUICE_COMPLETE": "complete_bash", "COMP_WORDS": "sluice pr"}
    env["COMP_CWORD"] = "1"
    sluice = Path(sys.executable).with_name("sluice")
    result = subprocess.run([sluice], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["promote", "predict"]
