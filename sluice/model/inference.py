"""Class probabilities from a network in eval mode: the softmax of its logits (averaged over
an ensemble's members), with an optional temperature."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def to_proba(
    logits: torch.Tensor, dtype: torch.dtype = torch.float32, temperature: float = 1.0
) -> torch.Tensor:
    """Class probabilities (batch, C): a softmax, averaged over members for (batch, k, C).

    ``temperature`` T divides the logits before the softmax (temperature scaling, fitted on
    validation): T > 1 softens over-confident probabilities, T = 1 changes nothing. For an
    ensemble it divides the log of the members' mean softmax (the ensemble's own logits), so
    that, as for one network, T never changes a row's most probable class.
    """
    z = logits.to(dtype)
    if temperature != 1.0:
        if z.dim() == 3:  # (batch, k, C) -> (batch, C): log of the members' mean softmax
            z = torch.logsumexp(torch.log_softmax(z, dim=-1), dim=1) - float(np.log(z.shape[1]))
        return torch.softmax(z / temperature, dim=-1)
    prob = torch.softmax(z, dim=-1)
    return prob.mean(dim=1) if prob.dim() == 3 else prob


@torch.no_grad()
def predict_proba(
    net: nn.Module,
    X: torch.Tensor,
    batch_size: int = 4096,
    dtype: torch.dtype = torch.float32,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Class probabilities (n, K) in eval mode; the softmax of ``logits / temperature`` is
    taken in ``dtype``.

    Rows of float32 probabilities sum to 1 only within about 1e-7, which scikit-learn's
    ``log_loss`` rejects in float64: callers that hand probabilities on ask for float64.
    """
    net.eval()
    parts = [
        to_proba(net(X[i : i + batch_size]), dtype, temperature)
        for i in range(0, len(X), batch_size)
    ]
    return torch.cat(parts) if parts else torch.empty(0)


@torch.no_grad()
def predict_logits(net: nn.Module, X: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Raw logits in eval mode: (n, C), or (n, k, C) for an ensemble (a temperature is fitted
    on them)."""
    net.eval()
    parts = [net(X[i : i + batch_size]) for i in range(0, len(X), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0)
