"""Tabular networks beside the MLP: TabM (from the ``tabm`` package) and a linear model.

TabM (Gorishniy et al., "TabM: Advancing Tabular Deep Learning with Parameter-Efficient
Ensembling", ICLR 2025) trains ``k`` MLPs at once that share most of their weights (BatchEnsemble
adapters); numeric inputs go through piecewise-linear embeddings (``rtdl_num_embeddings``). Its
``forward`` returns one set of logits per member, ``(batch, k, n_classes)``: the training loop
averages the members' losses and prediction averages their probabilities
(``sluice.model.training``).

Like every sluice network, both have a ``features`` body and a ``head``, the names that
``finetune.freeze`` and ``finetune.reinit_head`` refer to.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_BIN_ROWS = 100_000  # quantile bins from at most this many training rows (torch.quantile limit)


class TabM(nn.Module):
    """TabM with piecewise-linear embeddings of the numeric columns listed in ``embedded``.

    Input rows are sluice's preprocessed features: the numeric columns (power-transformed and
    standardised) and the one-hot columns. Columns in ``embedded`` (one ``bins`` list each) are
    embedded into ``d_embedding`` values; the others (one-hot, constant) pass through as they are.
    """

    def __init__(
        self,
        n_inputs: int,
        n_classes: int,
        hidden: list[int],
        dropout: float,
        k: int,
        embedded: list[int],
        bins: list[list[float]],
        d_embedding: int,
    ) -> None:
        super().__init__()
        import tabm

        self.k = k
        embed = _Embeddings(n_inputs, embedded, bins, d_embedding)
        backbone = tabm.make_tabm_backbone(
            d_in=embed.d_out,
            n_blocks=len(hidden),
            d_block=max(hidden),
            dropout=dropout,
            k=k,
            arch_type="tabm",
            # As tabm.TabM.make does: one random scale per feature chunk at the start.
            start_scaling_init="normal" if embedded else "random-signs",
            start_scaling_init_chunks=embed.chunks,
        )
        self.features = nn.Sequential(embed, tabm.EnsembleView(k=k), backbone)
        self.head = self.new_head(n_classes)

    def new_head(self, n_classes: int) -> nn.Module:
        """A fresh output layer: one linear map per ensemble member."""
        import tabm

        d_block = self.features[2].get_original_output_shape()[0]
        return tabm.LinearEnsemble(d_block, n_classes, k=self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, n_inputs) -> (batch, k, C)
        return self.head(self.features(x))


class _Embeddings(nn.Module):
    """Piecewise-linear embeddings of some columns; the rest passes through. Output is flat:
    (batch, n_inputs) -> (batch, len(embedded) * d_embedding + n_inputs - len(embedded))."""

    def __init__(
        self, n_inputs: int, embedded: list[int], bins: list[list[float]], d_embedding: int
    ) -> None:
        super().__init__()
        from rtdl_num_embeddings import PiecewiseLinearEmbeddings

        rest = [i for i in range(n_inputs) if i not in set(embedded)]
        self.register_buffer("embedded", torch.tensor(embedded, dtype=torch.long))
        self.register_buffer("rest", torch.tensor(rest, dtype=torch.long))
        self.pwl = (
            PiecewiseLinearEmbeddings(
                [torch.tensor(b, dtype=torch.float32) for b in bins],
                d_embedding,
                activation=False,
                version="B",
            )
            if embedded
            else None
        )
        self.chunks = [d_embedding] * len(embedded) + [1] * len(rest)
        self.d_out = sum(self.chunks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pwl is None:
            return x
        emb = self.pwl(x[:, self.embedded])  # (batch, n_embedded, d_embedding)
        return torch.cat([emb.flatten(1), x[:, self.rest]], dim=1)


class Linear(nn.Module):
    """Multinomial logistic regression: no body, one linear head (weight decay is its L2)."""

    def __init__(self, n_inputs: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential()  # nothing to freeze
        self.head = nn.Linear(n_inputs, n_classes)

    def new_head(self, n_classes: int) -> nn.Module:
        return nn.Linear(self.head.in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, n_inputs) -> logits
        return self.head(self.features(x))


def quantile_bins(
    X: np.ndarray, columns: list[int], n_bins: int, seed: int
) -> tuple[list[int], list[list[float]]]:
    """Bin edges for the piecewise-linear embeddings, from training rows.

    Returns the columns that can be embedded (at least two distinct values: a constant column
    has no bins) and their edges. Large tables use a seeded sample of ``MAX_BIN_ROWS`` rows.
    """
    from rtdl_num_embeddings import compute_bins

    if len(X) > MAX_BIN_ROWS:
        rows = np.random.default_rng(seed).choice(len(X), MAX_BIN_ROWS, replace=False)
        X = X[np.sort(rows)]
    usable = [c for c in columns if np.ptp(X[:, c]) > 0]
    if not usable or len(X) < 2:
        return [], []
    edges = compute_bins(torch.from_numpy(np.ascontiguousarray(X[:, usable])), n_bins=n_bins)
    return usable, [e.tolist() for e in edges]
