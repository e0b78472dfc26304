"""Ensembles: members' logits stacked, averaged by prediction, saved and rebuilt as one bundle;
folds, seeds and out-of-fold logits."""

import numpy as np
import pandas as pd
import pytest
import torch

from sluice.config import TrainConfig
from sluice.errors import SluiceError
from sluice.model.bundle import load_bundle, save_bundle
from sluice.model.ensemble import (
    Ensemble,
    build_model,
    member_seeds,
    members_of,
    new_ensemble,
    stack_out_of_fold,
    stratified_folds,
)
from sluice.model.factory import new_model
from sluice.model.nets import freeze

MLP_ARGS = {"n_inputs": 3, "n_classes": 3, "hidden": [8], "dropout": 0.0}
TABM_ARGS = {
    "n_inputs": 3,
    "n_classes": 3,
    "hidden": [8],
    "dropout": 0.0,
    "k": 4,
    "embedded": [],
    "bins": [],
    "d_embedding": 4,
}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": np.arange(n) % 3})


@pytest.mark.parametrize(("arch", "args", "k"), [("mlp", MLP_ARGS, 1), ("tabm", TABM_ARGS, 4)])
def test_members_logits_are_stacked_and_rebuilt_from_json(arch, args, k):
    net = new_ensemble(arch, args, member_seeds(0, 3))
    x = torch.randn(5, 3)
    net.eval()
    out = net(x)
    assert out.shape == (5, 3 * k, 3)
    member = members_of(net)[1](x)
    assert torch.equal(out[:, k : 2 * k].reshape(member.shape), member)
    again = build_model({"arch": arch, "args": args, "ensemble": {"members": 3}})
    again.load_state_dict(net.state_dict())
    again.eval()
    assert torch.equal(again(x), out)


def test_members_start_from_different_seeded_weights():
    net = new_ensemble("mlp", MLP_ARGS, member_seeds(7, 2))
    first, second = (m.head.weight for m in members_of(net))
    assert not torch.equal(first, second)
    single = new_ensemble("mlp", MLP_ARGS, [7])  # one seed: the plain network
    assert not isinstance(single, Ensemble)
    assert torch.equal(single.head.weight, first)


@pytest.fixture(scope="module")
def saved_ensemble(tmp_path_factory):
    """A three-member TabM ensemble from the factory, with a temperature, on disk."""
    train = frame()
    cfg = TrainConfig(model="tabm", hidden=[8], k=2, bins=4, d_embedding=4)
    types = {c: "numeric" for c in "abc"}
    net, spec = new_model(cfg, types, ["0", "1", "2"], train, 10, seed=3, members=3)
    spec = {**spec, "target": "y", "calibration": {"temperature": 1.7}}
    path = tmp_path_factory.mktemp("bundle") / "model"
    save_bundle(path, net, spec)
    return path, train


def test_a_saved_ensemble_predicts_the_average_of_its_members(saved_ensemble):
    path, rows = saved_ensemble
    clf = load_bundle(path)
    assert clf.spec["ensemble"]["members"] == 3 and len(clf.spec["ensemble"]["seeds"]) == 3
    X = torch.from_numpy(clf.preprocessor.transform(rows))
    with torch.no_grad():  # by hand: each member's (k) softmax, averaged over everything
        member_prob = [softmax(m.eval()(X).double().numpy()) for m in members_of(clf.net)]
    mean = np.concatenate(member_prob, axis=1).mean(axis=1)  # (n, 3 * k, C) -> (n, C)
    np.testing.assert_allclose(clf.predict_proba(rows, calibrated=False), mean, atol=1e-6)
    by_hand = softmax(np.log(mean) / 1.7)  # temperature on the log of the mean softmax
    np.testing.assert_allclose(clf.predict_proba(rows), by_hand, atol=1e-6)


def test_finetune_freezes_the_same_modules_in_every_member():
    net = new_ensemble("mlp", MLP_ARGS, member_seeds(0, 3))
    for member in members_of(net):
        freeze(member, ["features.0"])
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen == [f"members.{i}.features.0.{w}" for i in range(3) for w in ("weight", "bias")]


def test_member_seeds_are_derived_from_the_seed():
    seeds = member_seeds(42, 5)
    assert seeds[0] == 42 and len(set(seeds)) == 5
    assert member_seeds(42, 5) == seeds and member_seeds(43, 5) != seeds


def test_folds_are_stratified_and_partition_the_rows():
    y = np.repeat([0, 1, 2], [30, 12, 6])
    folds = stratified_folds(y, 3, seed=0, classes=["a", "b", "c"])
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(len(y)))
    for train_rows, held_out in folds:
        assert not set(train_rows) & set(held_out)
        assert np.bincount(y[held_out]).tolist() == [10, 4, 2]


def test_more_folds_than_rows_of_a_class_is_a_clear_error():
    y = np.repeat([0, 1], [20, 3])
    with pytest.raises(SluiceError, match="train.folds is 4, but class 'b' has 3 rows"):
        stratified_folds(y, 4, seed=0, classes=["a", "b"])


def test_out_of_fold_logits_come_back_in_row_order():
    parts = [(np.array([2, 0]), np.array([[1.0, 2.0], [3.0, 4.0]])), (np.array([1]), [[5.0, 6.0]])]
    out = stack_out_of_fold([(r, np.asarray(z)) for r, z in parts], 3)
    assert out.shape == (3, 1, 2)
    assert out[:, 0].tolist() == [[3.0, 4.0], [5.0, 6.0], [1.0, 2.0]]


def test_ensembles_train_in_one_process():
    from sluice.config import Params
    from sluice.pipeline.ensembling import plan_ensemble

    with pytest.raises(SluiceError, match="train.nproc"):
        TrainConfig(nproc=2, folds=3)
    assert TrainConfig(nproc=2).folds == 1
    spec = {"ensemble": {"members": 2, "seeds": [0, 1]}}  # fine-tuning an ensemble
    with pytest.raises(SluiceError, match=r"finetune.nproc \(or train.nproc\) is 2"):
        plan_ensemble(Params(), spec, {}, folds=1, resampled=False, nproc=2)
    assert plan_ensemble(Params(), spec, {}, folds=1, resampled=False).seeds == [0, 1]
