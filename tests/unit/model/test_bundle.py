"""Model bundles: weights-only, hash-checked, atomic, and rebuilt from their own files."""

import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from sluice.errors import SluiceError
from sluice.model.bundle import load_bundle, save_bundle, spec_digest
from sluice.model.nets import MLP
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
    path, _, _ = _bundle(tmp_path)
    state = torch.load(path / "model.pt", weights_only=True)
    state["head.bias"] += 1.0
    torch.save(state, path / "model.pt")
    with pytest.raises(SluiceError, match="SHA-256 does not match"):
        load_bundle(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


# torch notes that the crafted file uses pickle protocol 4 before refusing it: expected here.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickled_code_is_refused_even_with_a_matching_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, _, _ = _bundle(tmp_path)
    with open(path / "model.pt", "wb") as fh:
        pickle.dump({"head.bias": _Exploit()}, fh)
    spec = json.loads((path / "model.json").read_text())
    from sluice.io import file_sha256

    spec["weights_sha256"] = file_sha256(path / "model.pt")
    spec["spec_sha256"] = spec_digest(spec)
    (path / "model.json").write_text(json.dumps(spec))
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
