"""Networks for tables with free-text columns: a BiLSTM/GRU and a fastText-style n-gram network.

Both read the preprocessor's matrix (``sluice.model.preprocess``): the first ``n_tabular``
columns are numeric and one-hot features, then each text column's token ids (0 is padding,
always after the last real token). Each text column becomes one vector; the vectors and the
tabular features are joined before the head, so a table with text and numbers uses both.

Module names follow every sluice network: ``features`` (``features.0`` the embeddings,
``features.1`` the encoders, ``features.2`` the tabular branch) and ``head``, so
``finetune.freeze: [features.0, features.1]`` keeps what the text parts learnt and trains the
rest.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sluice.data.text import PAD

# A large odd multiplier (64-bit golden ratio, as a signed int64) mixes the first word's id
# before the second's joins it: word bigrams spread over the hash buckets.
_MIX = -7046029254386353131
MIN_DF = 2  # an n-gram in fewer training texts weighs 0 (TfidfVectorizer's min_df)


class _Body(nn.Module):
    """The joint text + tabular features, ``(batch, n_inputs) -> (batch, width)``."""

    def __init__(
        self,
        embeddings: nn.ModuleList,
        encoders: nn.ModuleList,
        text_width: int,
        n_tabular: int,
        tab_hidden: int,
        layout: list[dict[str, Any]],
        dropout: float,
    ) -> None:
        super().__init__()
        self.add_module("0", embeddings)
        self.add_module("1", encoders)
        # Tabular features join as they are (already scaled and one-hot) and through one hidden
        # layer, so the head sees them linearly and their interactions.
        if n_tabular:
            tab = nn.Sequential(nn.Linear(n_tabular, tab_hidden), nn.ReLU(), nn.Dropout(dropout))
        self.add_module("2", tab if n_tabular else nn.Identity())
        self.n_tabular = n_tabular
        self.spans = [(int(t["start"]), int(t["length"])) for t in layout]
        self.dropout = nn.Dropout(dropout)
        self.width = text_width * len(layout) + (n_tabular + tab_hidden if n_tabular else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeddings, encoders, tabular = (self._modules[n] for n in ("0", "1", "2"))
        parts = []
        for (start, length), embed, encode in zip(self.spans, embeddings, encoders, strict=True):
            ids = x[:, start : start + length].long()  # (batch, length)
            parts.append(self.dropout(encode(embed, ids)))  # (batch, text_width)
        if self.n_tabular:
            tab = x[:, : self.n_tabular]  # (batch, n_tabular)
            parts += [tab, tabular(tab)]
        return torch.cat(parts, dim=1)


class _Recurrent(nn.Module):
    """Stacked bidirectional LSTM/GRU over real tokens only, then mean and max pooling.

    The backward direction reads each text's own tokens reversed (padding stays after them), so
    neither direction ever reads padding before a real token: padding changes no output.
    """

    def __init__(self, embedding: int, hidden: int, layers: int, cell: str) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        sizes = [embedding] + [2 * hidden] * (layers - 1)
        self.forward_rnns = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.backward_rnns = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.width = 4 * hidden  # mean and max of both directions

    def forward(self, embed: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != PAD  # (batch, length)
        lengths = mask.sum(dim=1)  # (batch,)
        longest = max(int(lengths.max()), 1) if len(ids) else 1
        ids, mask = ids[:, :longest], mask[:, :longest]  # what follows is padding only
        flip = _reversal(lengths, longest)  # (batch, longest)
        h = embed(ids)  # (batch, longest, embedding)
        for fwd, bwd in zip(self.forward_rnns, self.backward_rnns, strict=True):
            ahead, _ = fwd(h)
            back, _ = bwd(_gather(h, flip))
            h = torch.cat([ahead, _gather(back, flip)], dim=2)  # (batch, longest, 2 * hidden)
        return _masked_pool(h, mask)


def _reversal(lengths: torch.Tensor, longest: int) -> torch.Tensor:
    """Per row, the positions that reverse its first ``length`` tokens and keep the rest."""
    pos = torch.arange(longest, device=lengths.device).expand(len(lengths), longest)
    return torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)


def _gather(h: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return h.gather(1, order[:, :, None].expand(-1, -1, h.shape[2]))


def _masked_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean and max over real tokens: (batch, length, d) -> (batch, 2d); an empty text is 0."""
    m = mask[:, :, None].to(h.dtype)
    mean = (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
    top = h.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)
    return torch.cat([mean, torch.where(torch.isfinite(top), top, torch.zeros_like(top))], dim=1)


class _Bag(nn.Module):
    """fastText's bag of a text's words and hashed word bigrams, weighted as TF-IDF: each id
    weighs its training IDF per occurrence, and a text's weights have unit L2 norm. The weighted
    sum of their embeddings is then a low-rank logistic regression on TF-IDF features, which the
    tabular features and the head build on.

    ``idf`` is a buffer (saved with the weights) that :meth:`NgramNet.fit_idf` sets from the
    natural training rows. An id in fewer than :data:`MIN_DF` training texts weighs 0, as
    scikit-learn's ``min_df`` drops it, so an embedding that training never moved (or a bucket
    only unseen bigrams hash to) never reaches a prediction.
    """

    def __init__(self, vocab: int, buckets: int) -> None:
        super().__init__()
        self.vocab, self.buckets = vocab, buckets
        self.register_buffer("idf", torch.ones(vocab + buckets))

    def forward(self, embed: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        bag = bag_ids(ids, self.vocab, self.buckets)  # (batch, 2 * length - 1)
        weights = self.idf[bag] * (bag != PAD)  # padding weighs 0 whatever its IDF
        norm = weights.square().sum(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
        return embed(bag, per_sample_weights=weights / norm)  # (batch, embedding)

    @torch.no_grad()
    def fit_idf(self, ids: torch.Tensor, chunk: int = 4096) -> None:
        """Set ``idf`` from the training texts ``ids`` (``(rows, length)`` token ids):
        ``ln((1 + n) / (1 + df)) + 1`` (scikit-learn's smooth IDF), 0 below :data:`MIN_DF`.
        Counted in integers, so it is the same buffer on every run and device."""
        size = self.vocab + self.buckets
        df = torch.zeros(size, dtype=torch.int64, device=ids.device)
        for i in range(0, len(ids), chunk):  # bounded memory on a large table
            bag = bag_ids(ids[i : i + chunk], self.vocab, self.buckets).sort(dim=1).values
            first = torch.ones_like(bag, dtype=torch.bool)
            first[:, 1:] = bag[:, 1:] != bag[:, :-1]  # each id once per text
            df += torch.bincount(bag[first & (bag != PAD)], minlength=size)
        idf = torch.log((1.0 + len(ids)) / (1.0 + df.double())) + 1.0
        self.idf.copy_(torch.where(df >= MIN_DF, idf, 0.0).to(self.idf.dtype))


def bag_ids(ids: torch.Tensor, vocab: int, buckets: int) -> torch.Tensor:
    """A text's word ids, then its word bigrams hashed into ``buckets`` ids after the ``vocab``
    word ids: ``(batch, length) -> (batch, 2 * length - 1)``; a bigram with padding is padding."""
    first, second = ids[:, :-1], ids[:, 1:]
    both = (first != PAD) & (second != PAD)
    bigram = vocab + torch.remainder(first * _MIX + second, buckets)
    return torch.cat([ids, torch.where(both, bigram, torch.zeros_like(bigram))], dim=1)


class _TextNet(nn.Module):
    """What both text families share: the ``features`` body and a linear ``head`` on it."""

    def _set_body(self, body: _Body, n_classes: int) -> None:
        self.features = body
        self.head = nn.Linear(body.width, n_classes)

    def new_head(self, n_classes: int) -> nn.Module:
        return nn.Linear(self.head.in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, n_inputs) -> logits
        return self.head(self.features(x))


class BiLSTM(_TextNet):
    """Embedding -> bidirectional LSTM or GRU -> masked mean/max pooling -> dropout -> head,
    one encoder per text column, joined with the tabular features."""

    def __init__(
        self,
        n_tabular: int,
        text: list[dict[str, Any]],
        n_classes: int,
        embedding: int,
        hidden: int,
        layers: int,
        cell: str,
        dropout: float,
        tab_hidden: int = 64,
    ) -> None:
        super().__init__()
        embeddings = nn.ModuleList(
            nn.Embedding(t["vocab"], embedding, padding_idx=PAD) for t in text
        )
        encoders = nn.ModuleList(_Recurrent(embedding, hidden, layers, cell) for _ in text)
        body = _Body(embeddings, encoders, 4 * hidden, n_tabular, tab_hidden, text, dropout)
        self._set_body(body, n_classes)


class NgramNet(_TextNet):
    """fastText-style, weighted as TF-IDF: each text's words and hashed word bigrams, their
    embeddings summed with TF-IDF weights (``nn.EmbeddingBag``), joined with the tabular
    features, then a linear head. Call :meth:`fit_idf` on the natural training rows before
    training.

    The embeddings start at zero, as logistic regression's weights do: random ones would be
    noise that rare ids, which weigh most, carry into every prediction until training moves them.
    """

    def __init__(
        self,
        n_tabular: int,
        text: list[dict[str, Any]],
        n_classes: int,
        embedding: int,
        buckets: int,
        dropout: float,
        tab_hidden: int = 64,
    ) -> None:
        super().__init__()
        embeddings = nn.ModuleList(
            nn.EmbeddingBag(t["vocab"] + buckets, embedding, mode="sum", padding_idx=PAD)
            for t in text
        )
        for bag in embeddings:
            nn.init.zeros_(bag.weight)
        encoders = nn.ModuleList(_Bag(t["vocab"], buckets) for t in text)
        body = _Body(embeddings, encoders, embedding, n_tabular, tab_hidden, text, dropout)
        self._set_body(body, n_classes)

    def fit_idf(self, X: torch.Tensor) -> NgramNet:
        """Each text column's IDF from the training rows ``X`` (the preprocessed matrix)."""
        bags = self.features.get_submodule("1")
        for (start, length), bag in zip(self.features.spans, bags, strict=True):
            bag.fit_idf(X[:, start : start + length].long())
        return self
