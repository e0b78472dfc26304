"""Fixtures for the model lifecycle: tiny real models in a real, throwaway MLflow store.

Three MLPs are trained once per session on breast-cancer data (plus a categorical column):
``weak`` (shuffled labels), ``good`` and ``good2`` (two seeds). They are logged and registered
once into a template store (versions 1, 2, 3; ``challenger`` -> 2, as the evaluate stage would
set it); each test gets its own copy of that store and of the project files the CLI reads.
``good`` carries a temperature and a decision threshold (as training fits them on validation),
set so that some test rows get another label than the argmax; the others are older-style
bundles without them (temperature 1, argmax).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

MODEL_NAME = "lifecycle-test"
EXPERIMENT = "lifecycle"
TARGET = "target"
ROLES = ("weak", "good", "good2")  # registered as versions 1, 2, 3
VERSION = {role: str(i) for i, role in enumerate(ROLES, start=1)}
BIN = Path(sys.executable).parent


@dataclass
class Trained:
    """Session-wide data and trained networks (not yet in any store)."""

    train: pd.DataFrame
    test: pd.DataFrame
    nets: dict
    spec: dict
    decisions: dict = field(default_factory=dict)  # role -> {"calibration", "decision"}


@dataclass
class Project:
    """One test's project folder: store, params.yaml, test split; and what is registered."""

    root: Path
    name: str
    test: pd.DataFrame
    bundles: dict[str, Path]
    env: dict[str, str] = field(default_factory=dict)

    def run_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run the real ``sluice`` console script in this project."""
        return subprocess.run(
            [str(BIN / "sluice"), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def make_frame() -> pd.DataFrame:
    """Breast-cancer features, a categorical text column, and string labels."""
    from sluice.data.datasets import load_builtin

    df = load_builtin("breast-cancer")
    bands = pd.cut(df["mean_radius"], [0, 12, 16, np.inf], labels=["small", "medium", "large"])
    df.insert(0, "size_band", bands.astype(str))
    df[TARGET] = df[TARGET].astype(str)
    return df


def train_net(pre, train: pd.DataFrame, seed: int, epochs: int, shuffle: bool):
    """A small MLP; ``shuffle`` trains it on permuted labels (a deliberately useless model)."""
    import torch

    from sluice.model.nets import MLP
    from sluice.model.preprocess import encode_labels
    from sluice.model.training import FitSettings, fit

    X = pre.transform(train)
    y = encode_labels(train[TARGET], ["0", "1"], "train")
    if shuffle:
        y = np.random.default_rng(seed).permutation(y)
    torch.manual_seed(seed)
    net = MLP(pre.n_outputs, 2, [16], 0.1)
    settings = FitSettings(
        optimizer="adamw",
        lr=0.01,
        weight_decay=0.0,
        schedule="none",
        epochs=epochs,
        batch_size=64,
        patience=epochs,
        monitor="loss",
        sampler="natural",
        augment_shift=0,
        seed=seed,
    )
    result = fit(net, (X, y, X[:64], y[:64]), 2, settings)
    net.load_state_dict(result.state_dict)
    return net.eval()


@pytest.fixture(scope="session")
def trained() -> Trained:
    """Train the three models once (a few seconds in all)."""
    import torch
    from sklearn.model_selection import train_test_split

    from sluice.model.preprocess import Preprocessor

    torch.set_num_threads(1)
    df = make_frame()
    train, test = train_test_split(df, test_size=0.25, stratify=df[TARGET], random_state=0)
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    types = {c: "categorical" if c == "size_band" else "numeric" for c in df.columns[:-1]}
    pre = Preprocessor(types).fit(train)
    nets = {
        "weak": train_net(pre, train, seed=0, epochs=3, shuffle=True),
        "good": train_net(pre, train, seed=0, epochs=25, shuffle=False),
        "good2": train_net(pre, train, seed=1, epochs=25, shuffle=False),
    }
    spec = {
        "arch": "mlp",
        "args": {"n_inputs": pre.n_outputs, "n_classes": 2, "hidden": [16], "dropout": 0.1},
        "classes": ["0", "1"],
        "preprocessor": pre.to_dict(),
        "target": TARGET,
    }
    decisions = {"good": good_decision(nets["good"], pre, test)}
    return Trained(train, test, nets, spec, decisions)


GOOD_TEMPERATURE = 2.0
SERVED_ROWS = 25  # the rows test_serve sends


def good_decision(net, pre, test: pd.DataFrame) -> dict:
    """A temperature and a threshold for ``good``: the median calibrated p(1) of the served rows
    the argmax calls positive, so that about half of them are negative under the threshold."""
    import torch

    from sluice.model.inference import predict_proba

    X = torch.from_numpy(pre.transform(test.head(SERVED_ROWS)))
    p1 = predict_proba(net, X, dtype=torch.float64, temperature=GOOD_TEMPERATURE)[:, 1].numpy()
    threshold = float(np.median(p1[p1 > 0.5]))
    return {
        "calibration": {"method": "temperature", "temperature": GOOD_TEMPERATURE},
        "decision": {"rule": "f1", "threshold": threshold, "positive_class": "1"},
    }


def register_models(root: Path, trained: Trained, roles=ROLES) -> dict[str, Path]:
    """Log and register ``roles`` (in order) as publish.py does; return role -> bundle dir."""
    import mlflow

    from sluice.evaluation.metrics import compute_metrics
    from sluice.model.bundle import load_bundle, save_bundle
    from sluice.model.preprocess import encode_labels
    from sluice.tracking.registry_io import bundle_tags, log_bundle_model, register
    from sluice.tracking.store import connect

    experiment_id = connect(EXPERIMENT)
    y_true = encode_labels(trained.test[TARGET], ["0", "1"], "test")
    bundles = {}
    for role in roles:
        with mlflow.start_run(experiment_id=experiment_id, run_name=role) as run:
            bundle = root / "models" / role
            lineage = {"run_id": run.info.run_id}
            spec = {**trained.spec, **trained.decisions.get(role, {}), "role": role}
            save_bundle(bundle, trained.nets[role], {**spec, "lineage": lineage})
            clf = load_bundle(bundle)
            uri = log_bundle_model(bundle, trained.test, clf)
        m = compute_metrics(y_true, clf.predict_proba(trained.test), clf.classes)
        tags = {"sluice.role": role, **{f"test_{k}": f"{m[k]:.6f}" for k in METRICS}}
        register(uri, MODEL_NAME, run.info.run_id, {**tags, **bundle_tags(clf)})
        bundles[role] = bundle
    return bundles


METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def use_project_env(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Point sluice's default store (``DVC_ROOT``/mlflow.db) and the cwd at ``root``."""
    mp.chdir(root)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mp.setenv("DVC_ROOT", str(root))


@pytest.fixture(scope="session")
def template(tmp_path_factory, trained) -> tuple[Path, dict[str, Path]]:
    """A store with versions 1-3 registered and ``challenger`` -> 2, built once."""
    from sluice.tracking.registry import record_alias_move
    from sluice.tracking.store import use_store

    root = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        use_project_env(mp, root)
        use_store()
        bundles = register_models(root, trained)
        record_alias_move(MODEL_NAME, "challenger", VERSION["good"], reason="evaluate (fixture)")
    return root, bundles


def write_project_files(root: Path, test: pd.DataFrame, promote: dict | None = None) -> None:
    """params.yaml, reports/clean.json and data/processed/test.parquet, as the pipeline would."""
    import yaml

    params = {
        "registry": {"model_name": MODEL_NAME, "experiment": EXPERIMENT},
        "promote": promote or {"bootstrap": 1000},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / "clean.json").write_text(json.dumps({"target": TARGET}))
    (root / "data" / "processed").mkdir(parents=True, exist_ok=True)
    test.to_parquet(root / "data" / "processed" / "test.parquet", index=False)


def subprocess_env(root: Path) -> dict[str, str]:
    """Environment for real ``sluice``/``mlflow`` processes using the project's store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(DVC_ROOT=str(root), SLUICE_DEBUG="0", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # As with an activated venv (the Makefile does this): `mlflow models serve` execs uvicorn.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


@pytest.fixture
def project(tmp_path, monkeypatch, template, trained) -> Project:
    """A private copy of the template store plus the project files, as the cwd."""
    from sluice.tracking.store import use_store

    src_root, bundles = template
    with (
        sqlite3.connect(src_root / "mlflow.db") as src,
        sqlite3.connect(tmp_path / "mlflow.db") as dst,
    ):
        src.backup(dst)
    write_project_files(tmp_path, trained.test)
    use_project_env(monkeypatch, tmp_path)
    use_store()
    return Project(tmp_path, MODEL_NAME, trained.test, bundles, subprocess_env(tmp_path))


@pytest.fixture
def fresh_project(tmp_path, monkeypatch, trained) -> Project:
    """A store of its own (artifacts included) with only ``good`` registered, as version 1."""
    from sluice.tracking.store import use_store

    write_project_files(tmp_path, trained.test)
    use_project_env(monkeypatch, tmp_path)
    use_store()
    bundles = register_models(tmp_path, trained, roles=("good",))
    return Project(tmp_path, MODEL_NAME, trained.test, bundles, subprocess_env(tmp_path))


def to_old_format(name: str) -> None:
    """Rewrite the history of ``name`` as an older sluice kept it: each entry a registered-model
    tag ``sluice.history.NNNNNN``, nothing in the description."""
    import mlflow

    from sluice.tracking.history import LEGACY_PREFIX, MOVE_PREFIX

    client = mlflow.MlflowClient()
    for version in client.search_model_versions(f"name = '{name}'"):
        for key, value in version.tags.items():
            if key.startswith(MOVE_PREFIX):
                legacy = f"{LEGACY_PREFIX}{key.removeprefix(MOVE_PREFIX)}"
                client.set_registered_model_tag(name, legacy, value)
                client.delete_model_version_tag(name, version.version, key)
    client.update_registered_model(name, None)
