"""Language-model pretraining of the bilstm family's text parts (ULMFiT-style).

Before the classifier trains, each text column's embedding (``features.0``) and recurrent
encoder (``features.1``) learn to predict the next token with their forward direction and,
reading each text's own tokens reversed, the previous token with their backward direction.
The weights they learn stay in the classifier's modules, which then start from them.

Each direction has its own next-token softmax over the column's vocabulary (at most
:data:`SOFTMAX_WORDS` words, most frequent first; a rarer target counts as ``<unk>``), an
adaptive one (:data:`CUTOFFS`) on a large vocabulary; these heads are dropped afterwards.
Padding is never a target. A layer above the first reads its own direction's output and zeros
for the other's half: the other direction has read the tokens to predict.

A seeded :data:`HELD_OUT` share of the texts never trains the language model and gives the
validation perplexity. Pure: tensors in, weights changed in place, per-epoch history out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from sluice.data.text import OOV, PAD, encode, tokenize
from sluice.model import distributed as dp
from sluice.model.ensemble import members_of
from sluice.model.text import _reversal
from sluice.model.training import FitSettings, make_optimizer, make_schedule, resolve_device

SOFTMAX_WORDS = 100_000  # words the next-token softmax ranks (the vocabulary's most frequent)
# The adaptive softmax (Grave et al. 2017) ranks the most frequent words at full cost and the
# rarer ones in clusters of smaller projections: exact probabilities at a fraction of the cost
# of a full softmax over a reviews vocabulary. A vocabulary under the first cutoff gets a full one.
CUTOFFS = (2_000, 10_000)
HELD_OUT = 0.1  # share of the pretraining texts kept for the validation perplexity
POOL_BATCHES = 20  # batches drawn together and cut by length, so batches carry little padding
CLIP_NORM = 1.0  # recurrent language models: gradient norm clipping keeps steps stable


def column_ids(texts: Sequence[str], vocab: Sequence[str], max_len: int) -> np.ndarray:
    """Token ids ``(n, max_len)`` of ``texts`` over one column's fitted vocabulary, as the
    preprocessor encodes them (the first ``max_len`` tokens, right-padded)."""
    index = {tok: i for i, tok in enumerate(vocab)}
    return encode((tokenize(t) for t in texts), index, max_len).astype(np.int64)


class _LanguageModel(nn.Module):
    """Forward and backward language models over one column's embedding and encoder."""

    def __init__(self, embed: nn.Embedding, encoder: nn.Module, words: int, dropout: float):
        super().__init__()
        self.embed, self.encoder = embed, encoder
        hidden = encoder.forward_rnns[0].hidden_size
        self.words = min(words, embed.num_embeddings)
        cutoffs = [c for c in CUTOFFS if c < self.words - 1]
        self.softmax = nn.ModuleList(
            nn.AdaptiveLogSoftmaxWithLoss(hidden, self.words, cutoffs, div_value=4.0)
            if cutoffs
            else nn.Linear(hidden, self.words)
            for _ in range(2)  # forward, backward
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Summed next-token negative log-likelihood of both directions, and the tokens it
        covers. ids: (batch, length), padding after the real tokens."""
        lengths = (ids != PAD).sum(dim=1)  # (batch,)
        longest = max(int(lengths.max()), 1)
        ids = ids[:, :longest]
        backward = ids.gather(1, _reversal(lengths, longest))  # each text's tokens reversed
        total, count = torch.zeros((), device=ids.device), 0
        for direction, seq in enumerate((ids, backward)):
            states = self._states(seq, direction)[:, :-1]  # (batch, longest - 1, hidden)
            target = seq[:, 1:]  # the token after each state (reversed: the one before)
            keep = target != PAD
            target = target[keep]  # (tokens,)
            target = torch.where(target < self.words, target, torch.full_like(target, OOV))
            total = total + self._nll(direction, self.dropout(states[keep]), target)
            count += len(target)
        return total, count

    def _nll(self, direction: int, states: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood of ``target`` (tokens,) given ``states``."""
        softmax = self.softmax[direction]
        if isinstance(softmax, nn.Linear):
            return nn.functional.cross_entropy(softmax(states), target, reduction="sum")
        return softmax(states, target).loss * len(target)  # the loss is a mean over tokens

    def _states(self, seq: torch.Tensor, direction: int) -> torch.Tensor:
        """One direction's top-layer states: (batch, length) -> (batch, length, hidden)."""
        rnns = self.encoder.forward_rnns if direction == 0 else self.encoder.backward_rnns
        h = self.embed(seq)  # (batch, length, embedding)
        for layer, rnn in enumerate(rnns):
            if layer:  # the classifier's upper layers read (forward half, backward half)
                halves = [h, torch.zeros_like(h)]
                h = torch.cat(halves if direction == 0 else halves[::-1], dim=2)
            h, _ = rnn(h)
        return h


def pretrain_text(
    net: nn.Module,
    columns: list[np.ndarray],
    s: FitSettings,
    epochs: int,
    dropout: float = 0.1,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Pretrain a bilstm network's (or each ensemble member's) embeddings and encoders as
    language models; returns per-epoch ``pretrain_perplexity`` (training texts, with dropout)
    and ``pretrain_val_perplexity`` (the held-out texts).

    Args:
        net: a ``BiLSTM`` or an ensemble of them; members all start from the first's weights.
        columns: per text column, in the network's order, the token ids ``(n, length)`` of the
            pretraining texts (the training split's and any unlabelled ones).
        s: the optimizer, learning rate, schedule, batch size, seed and device of training.
        epochs: passes over the pretraining texts.
    """
    members = members_of(net)
    first = members[0]
    device = dp.rank_device(resolve_device(s.device), dp.current_world())  # as fit does
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    embeddings, encoders = first.features.get_submodule("0"), first.features.get_submodule("1")
    lms = nn.ModuleList(
        _LanguageModel(e, enc, SOFTMAX_WORDS, dropout)
        for e, enc in zip(embeddings, encoders, strict=True)
    ).to(device)
    parts = [_split(torch.from_numpy(np.asarray(ids, dtype=np.int64)), gen) for ids in columns]
    s = replace(s, epochs=epochs)
    steps = sum(-(-len(train) // s.batch_size) for train, _ in parts)
    opt = make_optimizer(lms, s)
    sched = make_schedule(opt, s, max(1, steps))
    history = []
    for epoch in range(1, epochs + 1):
        train_nll = _train_epoch(lms, parts, opt, sched, s.batch_size, gen, device)
        record = {
            "epoch": epoch,
            "pretrain_perplexity": _perplexity(*train_nll),
            "pretrain_val_perplexity": _perplexity(*_evaluate(lms, parts, s.batch_size, device)),
        }
        history.append(record)
        if on_epoch:
            on_epoch(record)
    lms.to("cpu")
    _share(first, members[1:])
    return history


def _split(ids: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts with something to predict (two tokens or more), cut into (training, held out)."""
    ids = ids[(ids != PAD).sum(dim=1) >= 2]
    order = torch.randperm(len(ids), generator=gen)
    held = max(1, round(HELD_OUT * len(ids))) if len(ids) >= 2 else 0
    return ids[order[held:]], ids[order[:held]]


def _batches(ids: torch.Tensor, size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of row indices: a seeded shuffle, cut into pools of
    :data:`POOL_BATCHES` batches sorted by length (texts of a batch have similar lengths,
    so little compute goes to padding), in a shuffled order."""
    order = torch.randperm(len(ids), generator=gen)
    lengths = (ids != PAD).sum(dim=1)
    batches = []
    for i in range(0, len(order), size * POOL_BATCHES):
        pool = order[i : i + size * POOL_BATCHES]
        pool = pool[torch.argsort(lengths[pool], stable=True)]
        batches += [pool[j : j + size] for j in range(0, len(pool), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen)]


def _train_epoch(lms, parts, opt, sched, size: int, gen, device) -> tuple[float, int]:
    """One pass over every column's training texts; their summed NLL and token count."""
    lms.train()
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for lm, (train, _) in zip(lms, parts, strict=True):
        for rows in _batches(train, size, gen):
            nll, tokens = lm(train[rows].to(device))
            if not tokens:
                continue
            opt.zero_grad(set_to_none=True)
            (nll / tokens).backward()
            nn.utils.clip_grad_norm_(lm.parameters(), CLIP_NORM)
            opt.step()
            if sched is not None:
                sched.step()
            total += nll.detach().double()
            count += tokens
    return float(total), count


@torch.no_grad()
def _evaluate(lms, parts, size: int, device) -> tuple[float, int]:
    """Summed NLL and token count of every column's held-out texts (no dropout)."""
    lms.eval()
    total, count = 0.0, 0
    for lm, (_, held) in zip(lms, parts, strict=True):
        for i in range(0, len(held), size):
            nll, tokens = lm(held[i : i + size].to(device))
            total, count = total + float(nll), count + tokens
    return total, count


def _perplexity(nll: float, tokens: int) -> float:
    return math.exp(nll / tokens) if tokens else float("nan")


def _share(first: nn.Module, others: Sequence[nn.Module]) -> None:
    """Ensemble members start from the first member's pretrained text parts."""
    for name in ("0", "1"):
        state = first.features.get_submodule(name).state_dict()
        for member in others:
            member.features.get_submodule(name).load_state_dict(state)
