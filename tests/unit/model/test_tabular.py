"""TabM and the linear model: shapes, ensemble loss, probabilities, bins, bundles, fine-tuning."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fit_settings

from sluice.config import TrainConfig
from sluice.model.bundle import load_bundle, save_bundle
from sluice.model.factory import new_model
from sluice.model.inference import predict_proba, to_proba
from sluice.model.nets import build_net, count_parameters, freeze, replace_head
from sluice.model.tabular import Linear, TabM, quantile_bins
from sluice.model.training import FitSettings, ensemble_loss, fit


def table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Two informative numeric columns, a constant one, a category, and a binary label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n) + 2.0 * y,
            "b": rng.exponential(size=n) * (1 + y),
            "const": np.ones(n),
            "c": np.where(y == 1, rng.choice(["p", "q"], n), rng.choice(["q", "r"], n)),
            "y": y.astype(str),
        }
    )


TYPES = {"a": "numeric", "b": "numeric", "const": "numeric", "c": "categorical"}


def settings(**kw) -> FitSettings:
    return fit_settings(**{"epochs": 15, "patience": 15, **kw})


def arrays(pre_dict: dict, df: pd.DataFrame):
    from sluice.model.preprocess import Preprocessor

    X = Preprocessor.from_dict(pre_dict).transform(df)
    return X, df["y"].astype(int).to_numpy()


def test_tabm_returns_one_set_of_logits_per_member():
    net = TabM(
        6, 3, [16, 16], 0.0, k=4, embedded=[0, 1], bins=[[0, 1, 2], [-1, 0, 1]], d_embedding=5
    )
    logits = net(torch.randn(7, 6))
    assert logits.shape == (7, 4, 3)
    prob = to_proba(logits)
    assert prob.shape == (7, 3)
    torch.testing.assert_close(prob, torch.softmax(logits, -1).mean(1))
    torch.testing.assert_close(prob.sum(1), torch.ones(7))


def test_ensemble_loss_is_the_mean_of_the_members_losses():
    logits, y = torch.randn(5, 3, 4), torch.tensor([0, 1, 2, 3, 0])
    loss_fn = torch.nn.CrossEntropyLoss()
    members = torch.stack([loss_fn(logits[:, i], y) for i in range(3)])
    torch.testing.assert_close(ensemble_loss(loss_fn, logits, y), members.mean())
    torch.testing.assert_close(ensemble_loss(loss_fn, logits[:, 0], y), members[0])


def test_quantile_bins_skip_constant_columns():
    X = np.column_stack([np.arange(50.0), np.ones(50), np.linspace(-1, 1, 50)]).astype(np.float32)
    columns, bins = quantile_bins(X, [0, 1, 2], n_bins=8, seed=0)
    assert columns == [0, 2] and len(bins) == 2
    assert all(len(b) <= 9 and b == sorted(b) for b in bins)
    assert quantile_bins(np.ones((10, 2), np.float32), [0, 1], 8, 0) == ([], [])


@pytest.mark.parametrize("model", ["tabm", "linear"])
def test_new_model_learns_and_round_trips_through_a_bundle(tmp_path, model):
    df = table()
    cfg = TrainConfig(model=model, hidden=[32, 32], k=4, bins=8, d_embedding=4)
    net, spec = new_model(cfg, TYPES, ["0", "1"], df.iloc[:160], 50, seed=0)
    assert spec["arch"] == model
    if model == "tabm":
        assert spec["args"]["embedded"] == [0, 1]  # the constant column is not embedded
    X, y = arrays(spec["preprocessor"], df)
    result = fit(net, (X[:160], y[:160], X[160:], y[160:]), 2, settings())
    net.load_state_dict(result.state_dict)
    assert result.history[result.best_epoch - 1]["val_accuracy"] > 0.8
    save_bundle(tmp_path / "m", net, {**spec, "target": "y"})
    loaded = load_bundle(tmp_path / "m")
    expected = predict_proba(net, torch.from_numpy(X[160:]), dtype=torch.float64).numpy()
    np.testing.assert_array_equal(loaded.predict_proba(df.iloc[160:]), expected)


def test_tabm_is_deterministic_for_a_seed():
    df = table()
    cfg = TrainConfig(model="tabm", hidden=[16], k=2, bins=4, d_embedding=3)
    states = []
    for _ in range(2):
        net, spec = new_model(cfg, TYPES, ["0", "1"], df, 50, seed=3)
        X, y = arrays(spec["preprocessor"], df)
        states.append(fit(net, (X, y, X, y), 2, settings(epochs=3)).state_dict)
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_fine_tuning_parts_work_for_every_tabular_family():
    tabm = build_net(
        "tabm",
        {
            "n_inputs": 4,
            "n_classes": 2,
            "hidden": [8, 8],
            "dropout": 0.0,
            "k": 3,
            "embedded": [0],
            "bins": [[0.0, 0.5, 1.0]],
            "d_embedding": 2,
        },
    )
    freeze(tabm, ["features.0", "features.1"])  # the default finetune.freeze
    assert not any(p.requires_grad for p in tabm.features[0].parameters())
    replace_head(tabm, 5)
    assert tabm(torch.zeros(2, 4)).shape == (2, 3, 5)
    linear = Linear(4, 2)
    freeze(linear, ["features.0", "features.1"])  # no body: nothing to freeze, no error
    assert count_parameters(linear) == {"trainable": 10, "frozen": 0}
    replace_head(linear, 3)
    assert linear(torch.zeros(2, 4)).shape == (2, 3)
