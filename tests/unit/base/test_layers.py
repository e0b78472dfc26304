"""The package's layers (pyproject's import-linter contracts) hold, and the check can fail.

Also: every stage in dvc.yaml lists, as deps, the sluice code it imports, so a change to that
code re-runs the stage.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
LINT = Path(sys.executable).with_name("lint-imports")
BASE = {"sluice", "sluice.config", "sluice.errors", "sluice.io", "sluice.paths", "sluice.stage"}
BASE |= {
    "sluice.atomic",
    "sluice.params_yaml",
    "sluice.tuned",
    "sluice.progress",
}  # progress: display only
LOGGED_AS_CODE = {"evaluate": {"sluice.tracking.serving"}}  # MLflow loads it from the model


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120
    )


def copy_tree(dest: Path) -> Path:
    for name in ("sluice", "stages"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_layer_contracts_hold():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (
            "sluice/data/splitting.py",
            "import mlflow",
            "sluice.data is not allowed to import mlflow",
        ),
        (
            "sluice/model/nets.py",
            "from sluice.tracking import store",
            "sluice.model is not allowed to import sluice.tracking",
        ),
        (
            "sluice/evaluation/metrics.py",
            "from sluice.pipeline import publish",
            "sluice.evaluation is not allowed to import sluice.pipeline",
        ),
        (
            "sluice/pipeline/runner.py",
            "from sluice.tuning import study",
            "sluice.pipeline is not allowed to import sluice.tuning",
        ),
        (
            "sluice/tuning/study.py",
            "from sluice.lifecycle import promotion",
            "sluice.tuning is not allowed to import sluice.lifecycle",
        ),
        (
            "sluice/config/train.py",
            "from sluice.data import cleaning",
            "sluice.config is not allowed to import sluice.data",
        ),
    ],
)
def test_an_import_against_the_layers_fails_the_check(tmp_path, module, line, broken):
    tree = copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n\ndef _late():\n    {line}\n")
    out = lint(tree)
    assert out.returncode != 0
    assert broken in out.stdout


def test_every_stage_lists_the_code_it_imports_as_deps(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # `stages` is a folder of the project, not installed
    graph = grimp.build_graph("sluice", "stages")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        deps = [d.rstrip("/") for d in stage["deps"]]
        imported = {
            m for m in graph.find_upstream_modules(f"stages.{name}") if m.startswith("sluice.")
        }
        for module in sorted((imported | LOGGED_AS_CODE.get(name, set())) - BASE):
            if module.startswith("sluice.config."):
                continue  # the params sections: base layer, like sluice.config
            file = module.replace(".", "/") + ".py"
            covered = any(file == d or file.startswith(f"{d}/") for d in deps)
            assert covered, f"stage {name} imports {module} but dvc.yaml does not list {file}"
        assert f"stages/{name}.py" in deps
