"""Devices and mixed precision in the training loop: the CPU path explicitly, bf16/fp16 autocast
on the CPU, and the CUDA path where a GPU is present (skipped elsewhere)."""

import numpy as np
import pytest
import torch
from conftest import fit_settings

from sluice.errors import SluiceError
from sluice.model.nets import MLP
from sluice.model.training import fit, resolve_device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 4)) + np.eye(3, 4)[y] * 3).astype(np.float32)
    return X, y.astype(np.int64)


def train(**kw):
    X, y = blobs()
    torch.manual_seed(0)
    net = MLP(4, 3, [16], 0.0)
    result = fit(net, (X, y, X, y), 3, fit_settings(**{"epochs": 8, "patience": 8, **kw}))
    return net, result


def test_explicit_cpu_matches_the_default_and_returns_cpu_weights():
    net, result = train(device="cpu")
    _, default = train()
    assert all(v.device.type == "cpu" for v in result.state_dict.values())
    assert next(net.parameters()).device.type == "cpu"
    for key, value in result.state_dict.items():
        assert torch.equal(value, default.state_dict[key]), key


def test_auto_is_cuda_only_when_a_gpu_is_there():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error():
    with pytest.raises(SluiceError, match="train.device is cuda, but torch sees no CUDA GPU"):
        train(device="cuda")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_the_cpu_trains_to_finite_losses_and_similar_quality(precision):
    _, fp32 = train(precision="fp32")
    _, mixed = train(precision=precision)
    losses = [r["train_loss"] for r in mixed.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    best = lambda r: r.history[r.best_epoch - 1]  # noqa: E731
    assert best(mixed)["val_accuracy"] >= best(fp32)["val_accuracy"] - 0.03
    assert abs(best(mixed)["val_loss"] - best(fp32)["val_loss"]) < 0.05


@CUDA
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_is_deterministic_and_saves_cpu_weights(precision):
    runs = [train(device="cuda", precision=precision, deterministic=True)[1] for _ in range(2)]
    for key, value in runs[0].state_dict.items():
        assert value.device.type == "cpu"
        assert torch.equal(value, runs[1].state_dict[key]), key
    assert runs[0].history[runs[0].best_epoch - 1]["val_accuracy"] > 0.9
