"""Loading from the registry: fine-tuning's start model, and refusal of tampered files: by the
bundle's own hashes, and, where an attacker recomputed those, by the digest the registry
recorded when the version was registered (``sluice.bundle_sha256``)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
import torch
import yaml
from typer.testing import CliRunner

from sluice.cli import EXIT_REFUSED, app
from sluice.errors import SluiceError
from sluice.model.bundle import load_bundle, spec_digest
from sluice.tracking.registry import aliases, read_history
from sluice.tracking.registry_io import BUNDLE_TAG, load_registered, load_start_model

from .conftest import (
    EXPERIMENT,
    MODEL_NAME,
    VERSION,
    Project,
    subprocess_env,
    use_project_env,
    write_project_files,
)


def registry_bundle(name: str, version: str) -> Path:
    """The bundle directory of a registered version inside the artifact store itself."""
    uri = mlflow.MlflowClient().get_model_version_download_uri(name, version)
    root = Path(urlparse(uri).path)
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    return root / mlmodel["flavors"]["python_function"]["artifacts"]["bundle"]["path"]


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("ref", "role"), [("@champion", "good"), ("/3", "good2")], ids=["alias", "version"]
)
def test_load_start_model_from_the_registry(project, ref, role):
    assert CliRunner().invoke(app, ["promote"]).exit_code == 0  # good -> champion
    init_from = f"models:/{project.name}{ref}"
    classifier, lineage = load_start_model(init_from, project.name)
    local = load_bundle(project.bundles[role])
    assert same_weights(classifier.net, local.net)
    assert not same_weights(classifier.net, load_bundle(project.bundles["weak"]).net)
    version = mlflow.MlflowClient().get_model_version(project.name, VERSION[role])
    assert lineage == {
        "init_from": init_from,
        "parent_version": VERSION[role],
        "parent_run_id": version.run_id,
    }
    assert version.run_id == local.spec["lineage"]["run_id"]


def test_load_start_model_with_an_unknown_alias_is_a_clear_error(project):
    with pytest.raises(SluiceError, match="not found in the registry"):
        load_start_model(f"models:/{project.name}@nobody", project.name)


class Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def craft_malicious(path: Path, marker: Path) -> None:
    """A torch file whose unpickling writes ``marker``; prove it is live, then reset."""
    torch.save({"features.0.weight": Payload(marker)}, path)
    # the unsafe way: the code runs (from bytes: torch reads a .safetensors path as safetensors)
    torch.load(io.BytesIO(path.read_bytes()), weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()


@pytest.mark.parametrize("attack", ["hash-mismatch", "hash-updated", "old-format"], ids=lambda a: a)
def test_tampered_registered_model_is_refused_without_running_code(fresh_project, tmp_path, attack):
    """A version registered without a digest (an older sluice): the bundle's own checks hold."""
    name, marker = fresh_project.name, tmp_path / "marker"
    mlflow.MlflowClient().delete_model_version_tag(name, "1", BUNDLE_TAG)  # as an older sluice
    bundle = registry_bundle(name, "1")
    weights = "model.pt" if attack == "old-format" else "model.safetensors"
    craft_malicious(bundle / weights, marker)
    expected = "SHA-256 does not match"
    if attack != "hash-mismatch":  # the attacker also rewrites the recorded hash
        spec = json.loads((bundle / "model.json").read_text())
        spec["format"] = 1 if attack == "old-format" else spec["format"]  # torch.load's turn
        spec["weights_sha256"] = hashlib.sha256((bundle / weights).read_bytes()).hexdigest()
        spec["spec_sha256"] = spec_digest(spec)  # and the spec's own digest
        (bundle / "model.json").write_text(json.dumps(spec))
        expected = "not a plain weights file"

    with pytest.raises(SluiceError, match=expected) as caught:
        load_registered(f"models:/{name}/1", name)
    assert "refused" in str(caught.value)
    with pytest.raises(SluiceError, match=expected):
        mlflow.pyfunc.load_model(f"models:/{name}/1")  # what `mlflow models serve` loads
    fresh_project.test.to_csv(fresh_project.root / "in.csv", index=False)
    result = CliRunner().invoke(app, ["predict", "in.csv", "-o", "out.csv", "--model", "1"])
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert expected in result.stderr and "refused" in result.stderr
    assert not marker.exists()
    assert not (fresh_project.root / "out.csv").exists()


# The registry's digest: versions registered as the evaluate stage registers them.

COST = {"latency_p50_ms_b1": 40.0, "latency_p95_ms_b1": 50.0, "bundle_bytes": 6e3}
LATENCY_BUDGET = {"bootstrap": 200, "budgets": {"latency_p95_ms": 5}}


@pytest.fixture
def pinned(tmp_path, monkeypatch, trained) -> Project:
    """A store of its own: ``good`` (version 1, with a 50 ms latency record) and ``good2``
    (version 2), registered with the tags ``publish`` gives a version (its digest included);
    ``promote.budgets`` holds latency to 5 ms."""
    from sluice.config import Params
    from sluice.model.bundle import save_bundle
    from sluice.pipeline.publish import _lineage_tags
    from sluice.tracking.registry_io import log_bundle_model, register
    from sluice.tracking.store import connect

    write_project_files(tmp_path, trained.test, promote=LATENCY_BUDGET)
    use_project_env(monkeypatch, tmp_path)
    experiment_id, bundles = connect(EXPERIMENT), {}
    for role, cost in (("good", COST), ("good2", None)):
        with mlflow.start_run(experiment_id=experiment_id, run_name=role) as run:
            bundle = bundles[role] = tmp_path / "models" / role
            spec = {**trained.spec, **trained.decisions.get(role, {}), "role": role}
            spec |= {"lineage": {"run_id": run.info.run_id}, **({"cost": cost} if cost else {})}
            save_bundle(bundle, trained.nets[role], spec)
            clf = load_bundle(bundle)
            uri = log_bundle_model(bundle, trained.test, clf)
        tags = _lineage_tags(clf, Params(), {"mlflow.source.git.commit": "0" * 40})
        register(uri, MODEL_NAME, run.info.run_id, {"sluice.role": role, **tags})
    return Project(tmp_path, MODEL_NAME, trained.test, bundles, subprocess_env(tmp_path))


def test_a_version_carries_its_bundle_digest_and_loads_without_a_word(pinned, caplog):
    name = pinned.name
    version = mlflow.MlflowClient().get_model_version(name, "1")
    stored = json.loads((registry_bundle(name, "1") / "model.json").read_text())
    assert version.tags[BUNDLE_TAG] == stored["spec_sha256"] == spec_digest(stored)
    with caplog.at_level(logging.WARNING):
        classifier, _ = load_registered(f"models:/{name}/1", name)
    assert caplog.records == []
    assert classifier.spec["cost"] == COST
    result = CliRunner().invoke(app, ["promote", "--version", "1"])
    assert result.exit_code == EXIT_REFUSED, result.output  # 50 ms: over the budget
    assert "budget latency_p95_ms: 50 ms over the limit 5 ms" in result.stdout


def reverse_classes(spec: dict, bundle: Path, other: Path) -> None:
    spec["classes"].reverse()


def zero_threshold(spec: dict, bundle: Path, other: Path) -> None:
    spec["decision"]["threshold"] = 0.0  # every row positive


def lower_latency(spec: dict, bundle: Path, other: Path) -> None:
    spec["cost"]["latency_p95_ms_b1"] = 1.0  # within promote.budgets


def other_weights(spec: dict, bundle: Path, other: Path) -> None:
    """Version 2's weights, with their hash."""
    shutil.copy(other / "model.safetensors", bundle / "model.safetensors")
    spec["weights_sha256"] = json.loads((other / "model.json").read_text())["weights_sha256"]


def other_bundle(spec: dict, bundle: Path, other: Path) -> None:
    """Version 2's bundle as a whole: valid by its own hashes."""
    spec.clear()
    spec.update(json.loads((other / "model.json").read_text()))
    shutil.copy(other / "model.safetensors", bundle / "model.safetensors")


@pytest.mark.parametrize(
    "edit", [reverse_classes, zero_threshold, lower_latency, other_weights, other_bundle]
)
def test_a_registered_bundle_edited_in_the_store_is_refused_in_one_line(pinned, edit):
    """The attacker recomputes the bundle's own hashes, so the bundle alone looks sound; the
    digest recorded in the registry is what refuses it, wherever a registered model is loaded."""
    name, bundle = pinned.name, registry_bundle(pinned.name, "1")
    spec = json.loads((bundle / "model.json").read_text())
    edit(spec, bundle, registry_bundle(name, "2"))
    spec["spec_sha256"] = spec_digest(spec)
    (bundle / "model.json").write_text(json.dumps(spec))
    load_bundle(bundle)  # its own checks pass: the bundle's hashes were recomputed
    line = (
        f"models:/{name}/1: refused, the bundle's digest differs from the one recorded when it "
        f"was registered ({BUNDLE_TAG}); it was changed after registration: do not use it, "
        "re-register the model from a trusted run"
    )

    with pytest.raises(SluiceError) as caught:
        load_registered("1", name)
    assert str(caught.value) == line
    with pytest.raises(SluiceError) as caught:
        load_start_model(f"models:/{name}/1", name)  # finetune.init_from
    assert str(caught.value) == line
    pinned.test.to_csv(pinned.root / "in.csv", index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "in.csv", "-o", "out.csv", "--model", "1"])
    assert (result.exit_code, result.stderr) == (1, f"error: {line}\n")
    assert not (pinned.root / "out.csv").exists()
    result = runner.invoke(app, ["promote", "--version", "1"])
    assert (result.exit_code, result.stderr) == (1, f"error: {line}\n")
    assert "champion" not in aliases(name) and read_history(name) == []
