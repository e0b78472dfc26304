"""Same params, data and seed on CPU (one torch thread): `dvc repro -f` gives identical metrics
files and weights; another seed gives different ones.

Both re-runs start from copies of the shared messy-CSV project (same files, same git commit,
fresh MLflow stores) and run side by side, one forced with the same seed and one with seed 1.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from .conftest import copy_project, start

pytestmark = pytest.mark.slow

METRICS_FILES = (
    "reports/metrics.json",
    "reports/resample.json",
    "reports/train/base.csv",
    "reports/train/finetuned.csv",
    "reports/plots/roc_finetuned.json",
    "data/processed/test.parquet",
    "data/processed/train_resampled.parquet",
)
SEED_DEPENDENT = (
    "reports/metrics.json",
    "reports/train/base.csv",
    "data/processed/test.parquet",
    "data/processed/train_resampled.parquet",
)
ROLES = ("base", "finetuned")


def _outputs(project) -> dict[str, object]:
    """Metrics files and data splits as bytes, and each model's weights."""
    out: dict[str, object] = {f: (project.path / f).read_bytes() for f in METRICS_FILES}
    for role in ROLES:
        out[role] = load_file(project.path / f"models/{role}/model.safetensors")
    return out


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_forced_rerun_is_identical_and_another_seed_differs(messy_pipeline, tmp_path):
    assert messy_pipeline.read_json("reports/split.json")  # the first run is complete
    first = _outputs(messy_pipeline)
    again = copy_project(messy_pipeline, tmp_path / "again")
    other = copy_project(messy_pipeline, tmp_path / "seed1")
    other.set_params({"seed": 1})
    again.env["PYTHONHASHSEED"] = "random"  # as for a user: nothing may hang on str hashing
    procs = [start(again, "dvc", "repro", "-f"), start(other, "dvc", "repro")]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out

    second, third = _outputs(again), _outputs(other)
    for name in METRICS_FILES:
        assert second[name] == first[name], f"{name} changed on a forced re-run"
    for role in ROLES:
        assert _same_weights(second[role], first[role]), f"{role} weights changed"
        assert not _same_weights(third[role], first[role]), f"{role} weights ignore the seed"
    for name in SEED_DEPENDENT:
        assert third[name] != first[name], f"{name} ignores the seed"
