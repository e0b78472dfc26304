"""Networks and the shared training loop: shapes, freezing, early stopping, checkpoints."""

import numpy as np
import pytest
import torch
from conftest import fit_settings

from sluice.errors import SluiceError
from sluice.model.inference import predict_proba
from sluice.model.nets import (
    CNN,
    MLP,
    build_net,
    choose_arch,
    count_parameters,
    freeze,
    image_shape_for,
    replace_head,
)
from sluice.model.training import (
    FitSettings,
    batch_order,
    fit,
    macro_f1,
    shift_images,
)


def _settings(**kw) -> FitSettings:
    return fit_settings(**{"monitor": "f1_macro", **kw})


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 4)) + np.eye(3, 4)[y] * 3).astype(np.float32)
    return X, y.astype(np.int64)


def test_mlp_and_cnn_output_logits():
    assert MLP(5, 3, [8, 4], 0.1)(torch.zeros(2, 5)).shape == (2, 3)
    assert CNN(10, [8, 8], [4, 8, 8], 0.1)(torch.zeros(2, 64)).shape == (2, 10)
    assert CNN(4, [28, 28], [4, 8], 0.0)(torch.zeros(3, 784)).shape == (3, 4)


@pytest.mark.parametrize(
    ("n", "numeric", "requested", "arch"),
    [
        (64, True, "auto", "cnn"),
        (30, True, "auto", "tabm"),
        (64, False, "auto", "tabm"),
        (64, True, "mlp", "mlp"),
    ],
)
def test_choose_arch(n, numeric, requested, arch):
    assert choose_arch(requested, n, numeric) == arch


def test_cnn_on_non_square_rows_is_refused():
    assert image_shape_for(30) is None
    with pytest.raises(SluiceError, match="train.model cnn needs square images"):
        choose_arch("cnn", 30, True)


def test_freeze_stops_gradients_and_names_unknown_modules():
    net = MLP(4, 3, [8], 0.0)
    freeze(net, ["features"])
    counts = count_parameters(net)
    assert counts == {"trainable": 8 * 3 + 3, "frozen": 4 * 8 + 8 + 2 * 8}
    with pytest.raises(SluiceError, match="no module 'body'; top-level modules: features, head"):
        freeze(net, ["body"])


def test_fit_learns_and_keeps_frozen_weights_fixed():
    X, y = _blobs()
    torch.manual_seed(0)
    net = MLP(4, 3, [16], 0.0)
    result = fit(net, (X, y, X, y), 3, _settings())
    net.load_state_dict(result.state_dict)
    assert result.history[result.best_epoch - 1]["val_f1_macro"] > 0.9
    before = {k: v.clone() for k, v in net.features.state_dict().items()}
    freeze(net, ["features"])
    replace_head(net, 3)
    fit(net, (X, y, X, y), 3, _settings(epochs=3))
    for key, value in net.features.state_dict().items():
        assert torch.equal(value, before[key]), key  # batch-norm statistics included


def test_early_stopping_stops_after_patience():
    X, y = _blobs()
    result = fit(MLP(4, 3, [], 0.0), (X, y, X, y), 3, _settings(lr=0.0, patience=3))
    assert len(result.history) == 4 and result.best_epoch == 1


def test_a_diverging_loss_stops_with_one_line_naming_the_learning_rate():
    X, y = _blobs()
    X[:, 0] *= 1e30  # far from standardised: the logits overflow within an epoch
    torch.manual_seed(0)
    settings = _settings(optimizer="sgd", lr=10.0, epochs=5)
    with pytest.raises(
        SluiceError,
        match=r"training diverged: the training loss became nan in "
        r"epoch 1 at learning rate 10; lower the learning rate \(train.lr",
    ):
        fit(MLP(4, 3, [], 0.0), (X, y, X, y), 3, settings)


def test_fit_is_deterministic_for_a_seed():
    X, y = _blobs()
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(fit(MLP(4, 3, [8], 0.2), (X, y, X, y), 3, _settings(epochs=3, seed=seed)))
    assert all(
        torch.equal(runs[0].state_dict[k], runs[1].state_dict[k]) for k in runs[0].state_dict
    )
    assert not all(
        torch.equal(runs[0].state_dict[k], runs[2].state_dict[k]) for k in runs[0].state_dict
    )


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    X, y = _blobs()
    ckpt = tmp_path / "ckpt.pt"
    settings = _settings(epochs=6, checkpoint_every=2, schedule="onecycle")
    torch.manual_seed(0)
    full = fit(MLP(4, 3, [8], 0.2), (X, y, X, y), 3, settings)
    torch.manual_seed(0)
    fit(
        MLP(4, 3, [8], 0.2),
        (X, y, X, y),
        3,
        _settings(epochs=6, checkpoint_every=2, schedule="onecycle"),
        None,
        ckpt,
    )
    assert ckpt.exists()  # the last checkpoint (epoch 4) stays until the caller removes it
    torch.manual_seed(123)  # a different init: resuming must overwrite it
    resumed = fit(MLP(4, 3, [8], 0.2), (X, y, X, y), 3, settings, None, ckpt)
    assert resumed.resumed_from == 4
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert all(torch.equal(full.state_dict[k], resumed.state_dict[k]) for k in full.state_dict)


def test_checkpoint_for_other_settings_is_ignored(tmp_path):
    X, y = _blobs()
    ckpt = tmp_path / "ckpt.pt"
    fit(MLP(4, 3, [8], 0.0), (X, y, X, y), 3, _settings(epochs=3, checkpoint_every=1), None, ckpt)
    result = fit(
        MLP(4, 3, [8], 0.0),
        (X, y, X, y),
        3,
        _settings(epochs=3, lr=0.02, checkpoint_every=1),
        None,
        ckpt,
    )
    assert result.resumed_from == 0


def test_corrupt_checkpoint_is_ignored(tmp_path):
    X, y = _blobs()
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"half a file")
    result = fit(MLP(4, 3, [8], 0.0), (X, y, X, y), 3, _settings(epochs=2), None, ckpt)
    assert result.resumed_from == 0


def test_balanced_sampler_draws_classes_evenly():
    y = torch.tensor([0] * 900 + [1] * 100)
    order = batch_order(y, _settings(sampler="balanced"), torch.Generator().manual_seed(0))
    share = (y[order] == 1).float().mean().item()
    assert 0.45 < share < 0.55
    natural = batch_order(y, _settings(), torch.Generator().manual_seed(0))
    assert sorted(natural.tolist()) == list(range(1000))


def test_shift_images_moves_pixels_by_at_most_the_shift():
    img = torch.zeros(1, 64)
    img[0, 3 * 8 + 3] = 1.0
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = shift_images(img, [8, 8], 1, gen).view(8, 8)
        r, c = (int(v) for v in torch.nonzero(out)[0])
        assert abs(r - 3) <= 1 and abs(c - 3) <= 1 and out.sum() == 1.0


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert macro_f1(y_true, y_pred, 4) == pytest.approx(
        f1_score(y_true, y_pred, average="macro", labels=range(4))
    )


def test_build_net_round_trip():
    net = build_net("cnn", {"n_classes": 3, "image_shape": [8, 8], "channels": [4], "dropout": 0})
    assert isinstance(net, CNN)


def test_probabilities_in_float64_sum_to_one():
    """Float32 rows are off by ~1e-7, which scikit-learn's log_loss warns about in float64."""
    torch.manual_seed(0)
    net = MLP(8, 10, [16], 0.0)
    X = torch.randn(500, 8) * 10
    off32 = (predict_proba(net, X).double().sum(1) - 1).abs().max()
    off64 = (predict_proba(net, X, dtype=torch.float64).sum(1) - 1).abs().max()
    assert off32 > 1e-8
    assert off64 < 1e-12
