"""Ensembles of one network architecture: cross-validated (one network per fold) and seed
ensembles (the same rows, other seeds).

An :class:`Ensemble` returns its members' logits stacked, ``(batch, members * k, C)`` (``k`` is 1
for the MLP, CNN and linear model, TabM's own member count for TabM), the shape TabM already
has. Prediction, temperature scaling, bundles, ``sluice predict`` and the served pyfunc therefore
average the members' softmax without knowing that there are several networks
(``sluice.model.training.to_proba``). A bundle stays one state dict plus JSON: the members'
constructor arguments, and their number in ``spec["ensemble"]["members"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sluice.errors import SluiceError
from sluice.model.nets import build_net


class Ensemble(nn.Module):
    """``members`` networks built from the same ``arch`` and ``args``; their logits stacked."""

    def __init__(self, arch: str, args: dict[str, Any], members: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(build_net(arch, args) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, n_inputs) -> (batch, M*k, C)
        outs = [member(x) for member in self.members]  # each (batch, C) or (batch, k, C)
        return torch.cat([o if o.dim() == 3 else o.unsqueeze(1) for o in outs], dim=1)


def new_ensemble(arch: str, args: dict[str, Any], seeds: list[int]) -> nn.Module:
    """One network per seed, each initialised after ``torch.manual_seed(seed)``; a single seed
    gives a plain network (exactly the one a non-ensemble run builds)."""
    nets = []
    for seed in seeds:
        torch.manual_seed(seed)
        nets.append(build_net(arch, args))
    if len(nets) == 1:
        return nets[0]
    ensemble = Ensemble(arch, args, 0)
    ensemble.members.extend(nets)
    return ensemble


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a bundle's network, an ensemble when ``spec["ensemble"]["members"]`` > 1."""
    members = int(spec.get("ensemble", {}).get("members", 1))
    if members > 1:
        return Ensemble(spec["arch"], spec["args"], members)
    return build_net(spec["arch"], spec["args"])


def members_of(net: nn.Module) -> list[nn.Module]:
    """The networks inside ``net``: its members, or ``[net]`` for a single network (what
    ``finetune.freeze`` and head replacement apply to, member by member)."""
    return list(net.members) if isinstance(net, Ensemble) else [net]


def member_seeds(seed: int, n: int) -> list[int]:
    """``n`` seeds derived from ``seed``: ``seed`` itself first (a one-member ensemble is the
    plain model), then independent ones spawned by numpy's ``SeedSequence``."""
    children = np.random.SeedSequence(seed).spawn(max(n - 1, 0))
    return [seed, *(int(c.generate_state(1)[0]) for c in children)]


def stratified_folds(
    y: np.ndarray, folds: int, seed: int, classes: list[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) per fold: stratified, shuffled with ``seed``.

    Raises SluiceError when a class has fewer rows than folds (a fold would miss it).
    """
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=len(classes))
    smallest = int(counts.argmin())
    if counts[smallest] < folds:
        raise SluiceError(
            f"train.folds is {folds}, but class '{classes[smallest]}' has {counts[smallest]} "
            "rows in train + val together; lower train.folds (at most the smallest class's "
            "rows) or set it to 1"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def stack_out_of_fold(parts: list[tuple[np.ndarray, np.ndarray]], n_rows: int) -> np.ndarray:
    """Out-of-fold logits: each row's logits from the members that held it out.

    Args:
        parts: (held-out row indices, their logits (n_f, k, C) or (n_f, C)) per fold, the folds
            partitioning ``range(n_rows)``; every part has the same member width k.
    Returns:
        (n_rows, k, C) logits in row order.
    """
    first = parts[0][1]
    width = first.shape[1] if first.ndim == 3 else 1
    out = np.empty((n_rows, width, first.shape[-1]), dtype=np.float64)
    seen = np.zeros(n_rows, dtype=bool)
    for rows, logits in parts:
        out[rows] = logits if logits.ndim == 3 else logits[:, None, :]
        seen[rows] = True
    assert seen.all(), "the folds do not cover every row"
    return out
