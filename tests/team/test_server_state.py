"""`sluice server` on a state folder it cannot trust: one line, and the folder left as it is.

No server starts here: both refusals come before PostgreSQL or MLflow would.
"""

from __future__ import annotations

import json

import pytest

from sluice.server.folder import MARKER

from .conftest import free_port, lines, sluice_server


def _snapshot(folder) -> dict[str, tuple[int, bytes]]:
    """Mode and content of the folder and of every file in it."""
    found = {".": (folder.stat().st_mode, b"")}
    for path in folder.rglob("*"):
        found[str(path)] = (path.stat().st_mode, path.read_bytes() if path.is_file() else b"")
    return found


def test_a_folder_start_did_not_create_is_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o755)
    (folder / "notes.txt").write_text("not a server's\n")
    (folder / "notes.txt").chmod(0o644)
    before = _snapshot(folder)
    result = sluice_server("start", "--state-dir", str(folder), "--port", str(free_port()))
    assert result.returncode == 1
    (line,) = lines(result.stderr)
    assert line.startswith(f"error: {folder} exists and was not made by `sluice server start`")
    assert "--state-dir" in line and _snapshot(folder) == before


@pytest.mark.parametrize("action", ["start", "stop", "status"])
def test_a_truncated_server_json_gives_one_line(tmp_path, action):
    folder = tmp_path / "server"
    folder.mkdir(mode=0o711)
    (folder / MARKER).write_text("made by `sluice server start`\n")
    state = {"pid": 12345, "port": 5000, "uri": "http://127.0.0.1:5000", "pg_port": 5432}
    text = json.dumps(state, indent=2)
    (folder / "server.json").write_text(text[: len(text) // 2])  # cut off mid-write
    before = _snapshot(folder)
    args = ["--port", str(free_port())] if action == "start" else []
    result = sluice_server(action, "--state-dir", str(folder), *args)
    assert result.returncode == 1, result.stdout
    (line,) = lines(result.stderr)
    assert line.startswith(f"error: {folder / 'server.json'} is damaged (not valid JSON")
    assert f"`sluice server stop --state-dir {folder}`" in line
    assert "Traceback" not in result.stderr and _snapshot(folder) == before
