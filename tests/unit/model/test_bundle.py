"""Model bundles: weights-only (safetensors, or an older bundle's torch file), hash-checked,
atomic, and rebuilt from their own files, for every architecture."""

import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from sluice.config import TrainConfig
from sluice.errors import SluiceError
from sluice.io import file_sha256
from sluice.model.bundle import load_bundle, save_bundle, spec_digest
from sluice.model.factory import new_model
from sluice.model.nets import ARCHS, MLP
from sluice.model.preprocess import Preprocessor

TYPES = {"a": "numeric", "c": "categorical"}


def _bundle(tmp_path):
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0], "c": ["x", "y", "x"]})
    pre = Preprocessor(TYPES).fit(frame)
    torch.manual_seed(0)
    net = MLP(pre.n_outputs, 2, [4], 0.0).eval()
    spec = {
        "arch": "mlp",
        "args": {"n_inputs": pre.n_outputs, "n_classes": 2, "hidden": [4], "dropout": 0.0},
        "classes": ["no", "yes"],
        "preprocessor": pre.to_dict(),
        "lineage": {"run_id": "r"},
    }
    save_bundle(tmp_path / "model", net, spec)
    return tmp_path / "model", net, frame


def test_round_trip_predicts_the_same(tmp_path):
    path, net, frame = _bundle(tmp_path)
    clf = load_bundle(path)
    expected = torch.softmax(net(torch.from_numpy(clf.preprocessor.transform(frame))), 1)
    prob = clf.predict_proba(frame)
    assert prob.dtype == np.float64
    np.testing.assert_allclose(prob, expected.detach().numpy(), rtol=1e-6)
    out = clf.predict_frame(frame)
    assert list(out.columns) == ["no", "yes"]
    assert clf.feature_columns == ["a", "c"]
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary left behind


def test_tampered_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path, _, _ = _bundle(tmp_path)
    state = load_file(path / "model.safetensors")
    state["head.bias"] += 1.0
    save_file(state, path / "model.safetensors")
    with pytest.raises(SluiceError, match="SHA-256 does not match"):
        load_bundle(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _rehash(path, weights: str) -> None:
    """What an attacker who can write the bundle does: record the new file's hash."""
    spec = json.loads((path / "model.json").read_text())
    spec["weights_sha256"] = file_sha256(path / weights)
    spec["spec_sha256"] = spec_digest(spec)
    (path / "model.json").write_text(json.dumps(spec))


# torch notes that the crafted file uses pickle protocol 4 before refusing it: expected here.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("fmt", [2, 1], ids=["safetensors", "old-format"])
def test_pickled_code_is_refused_even_with_a_matching_hash(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    path, net, _ = _bundle(tmp_path)
    if fmt == 1:
        save_legacy_bundle(path, net, json.loads((path / "model.json").read_text()))
    weights = "model.safetensors" if fmt == 2 else "model.pt"
    with open(path / weights, "wb") as fh:
        pickle.dump({"head.bias": _Exploit()}, fh)
    _rehash(path, weights)
    with pytest.raises(SluiceError, match="refused, not a plain weights file"):
        load_bundle(path)
    assert not (tmp_path / "pwned").exists()


def test_missing_files_are_explained(tmp_path):
    with pytest.raises(SluiceError, match="not a sluice model"):
        load_bundle(tmp_path)


def test_failed_save_leaves_the_old_bundle(tmp_path):
    path, net, _ = _bundle(tmp_path)
    before = (path / "model.json").read_text()
    with pytest.raises(TypeError):
        save_bundle(path, net, {"arch": "mlp", "bad": object()})
    assert (path / "model.json").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["model"]


def save_legacy_bundle(path, net: torch.nn.Module, spec: dict) -> None:
    """A bundle as sluice wrote it before safetensors (format 1): a torch file, ``model.pt``."""
    for name in ("model.safetensors", "model.pt"):
        (path / name).unlink(missing_ok=True)
    path.mkdir(exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, path / "model.pt")
    keep = {k: v for k, v in spec.items() if k not in ("format", "spec_sha256")}
    full = {"format": 1, **keep, "weights_sha256": file_sha256(path / "model.pt")}
    full["spec_sha256"] = spec_digest(full)
    (path / "model.json").write_text(json.dumps(full, indent=2))


def test_a_saved_bundle_holds_safetensors_and_nothing_is_unpickled(tmp_path, monkeypatch):
    path, net, frame = _bundle(tmp_path)
    assert sorted(os.listdir(path)) == ["model.json", "model.safetensors"]
    spec = json.loads((path / "model.json").read_text())
    assert spec["format"] == 2
    assert spec["weights_sha256"] == file_sha256(path / "model.safetensors")

    def refuse(*args, **kwargs):
        raise AssertionError("a format-2 bundle must load without unpickling")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    clf = load_bundle(path)
    assert _same_state(clf.net, net)


def test_an_old_format_bundle_with_a_torch_file_still_loads(tmp_path):
    path, net, frame = _bundle(tmp_path)
    expected = load_bundle(path).predict_proba(frame)
    save_legacy_bundle(path, net, json.loads((path / "model.json").read_text()))
    assert sorted(os.listdir(path)) == ["model.json", "model.pt"]
    clf = load_bundle(path)
    assert clf.spec["format"] == 1 and _same_state(clf.net, net)
    np.testing.assert_array_equal(clf.predict_proba(frame), expected)
    save_bundle(tmp_path / "again", clf.net, clf.spec)  # saved again: the current format
    again = json.loads((tmp_path / "again" / "model.json").read_text())
    assert again["format"] == 2 and (tmp_path / "again" / "model.safetensors").is_file()
    assert not (tmp_path / "again" / "model.pt").exists()


def test_a_bundle_of_a_newer_format_is_refused_in_one_line(tmp_path):
    path, _, _ = _bundle(tmp_path)
    spec = json.loads((path / "model.json").read_text())
    spec["format"] = 3
    spec["spec_sha256"] = spec_digest(spec)
    (path / "model.json").write_text(json.dumps(spec))
    with pytest.raises(SluiceError, match="format 3, which this sluice cannot read"):
        load_bundle(path)


def test_tied_tensors_are_saved_as_copies_and_load_back(tmp_path):
    path, net, frame = _bundle(tmp_path)
    net.features[1].bias = net.features[0].bias  # one tensor under two names
    state = net.state_dict()
    assert state["features.0.bias"].data_ptr() == state["features.1.bias"].data_ptr()
    spec = json.loads((path / "model.json").read_text())
    save_bundle(path, net, spec)
    assert _same_state(load_bundle(path).net, net)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


def _family_table(arch: str, n: int = 80) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows the family reads: text for the text families, a 4x4 image for the CNN."""
    rng = np.random.default_rng(0)
    if arch == "cnn":
        types = {f"p{i}": "numeric" for i in range(16)}
        frame = pd.DataFrame(rng.normal(size=(n, 16)), columns=list(types))
    elif arch in ("ngram", "bilstm"):
        types = {"review": "text", "amount": "numeric"}
        words = np.array(["tea", "good", "bad", "box", "late", "fine"])
        reviews = [" ".join(rng.choice(words, size=4)) for _ in range(n)]
        frame = pd.DataFrame({"review": reviews, "amount": rng.normal(size=n)})
    else:
        types = {"a": "numeric", "b": "numeric", "c": "categorical"}
        frame = pd.DataFrame(
            {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y"], n)}
        )
    return frame, types


@pytest.mark.parametrize("members", [1, 3], ids=["single", "ensemble"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_family_round_trips_bit_for_bit(tmp_path, arch, members):
    """Buffers included (the n-gram model's IDF, TabM's column indices), as do ensembles."""
    frame, types = _family_table(arch)
    cfg = TrainConfig(model=arch, hidden=[8], k=2, bins=4, d_embedding=4, channels=[4])
    net, spec = new_model(cfg, types, ["0", "1"], frame, 20, seed=1, members=members)
    net.eval()
    save_bundle(tmp_path / "m", net, spec)
    clf = load_bundle(tmp_path / "m")
    assert _same_state(clf.net, net)
    with torch.no_grad():
        X = torch.from_numpy(clf.preprocessor.transform(frame))
        assert torch.equal(clf.net(X), net(X))
