"""Loading from the registry: fine-tuning's start model, and refusal of tampered files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
import torch
import yaml
from typer.testing import CliRunner

from sluice.cli import app
from sluice.errors import SluiceError
from sluice.model.bundle import load_bundle, spec_digest
from sluice.tracking.registry_io import load_registered, load_start_model

from .conftest import VERSION


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
    torch.load(path, weights_only=False)  # the unsafe way: the code runs
    assert marker.read_text() == "pwned"
    marker.unlink()


@pytest.mark.parametrize("update_hash", [False, True], ids=["hash-mismatch", "hash-updated"])
def test_tampered_registered_model_is_refused_without_running_code(
    fresh_project, tmp_path, update_hash
):
    name, marker = fresh_project.name, tmp_path / "marker"
    bundle = registry_bundle(name, "1")
    craft_malicious(bundle / "model.pt", marker)
    expected = "SHA-256 does not match"
    if update_hash:  # the attacker also rewrites the recorded hash
        spec = json.loads((bundle / "model.json").read_text())
        spec["weights_sha256"] = hashlib.sha256((bundle / "model.pt").read_bytes()).hexdigest()
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
