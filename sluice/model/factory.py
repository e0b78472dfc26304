"""A new network from the train params: architecture, constructor arguments, preprocessing."""

from __future__ import annotations

from typing import Any, cast

import pandas as pd
import torch
from torch import nn

from sluice.config import TrainConfig
from sluice.model.ensemble import member_seeds, members_of, new_ensemble
from sluice.model.nets import TEXT_ARCHS, choose_arch, image_shape_for
from sluice.model.preprocess import Preprocessor
from sluice.model.tabular import quantile_bins
from sluice.model.text import NgramNet

SCALING = {"power": "power", "standard": "column"}  # train.scaler -> Preprocessor scaling


def new_model(
    cfg: TrainConfig,
    feature_types: dict[str, str],
    classes: list[str],
    train_natural: pd.DataFrame,
    max_categories: int,
    seed: int,
    members: int = 1,
) -> tuple[nn.Module, dict[str, Any]]:
    """A freshly initialised network and its spec (arch, constructor args, classes, fitted
    preprocessing): everything a bundle needs to rebuild it.

    ``members`` > 1 gives an ensemble of that many networks, initialised with seeds derived
    from ``seed`` (``sluice.model.ensemble.member_seeds``); the spec then holds them under
    ``ensemble``.

    The preprocessing is fitted on the natural training split only: validation and test rows
    never shape it, and resampled rows would distort its statistics.
    """
    all_numeric = all(t == "numeric" for t in feature_types.values())
    text_columns = [c for c, t in feature_types.items() if t == "text"]
    arch = choose_arch(cfg.model, len(feature_types), all_numeric, text_columns)
    scaling = "global" if arch == "cnn" else SCALING[cfg.scaler]
    text = cfg.text.model_dump(include={"max_vocab", "min_count", "max_len", "len_percentile"})
    pre = Preprocessor(feature_types, scaling, max_categories, text)
    pre.fit(train_natural)
    args = net_args(arch, cfg, pre.n_outputs, len(feature_types), len(classes))
    if arch in TEXT_ARCHS:
        args = text_net_args(arch, cfg, pre, len(classes))
    if arch == "tabm":
        args.update(embedding_args(cfg, pre, train_natural, seed))
    seeds = member_seeds(seed, members)
    net = new_ensemble(arch, args, seeds)
    if arch == "ngram":
        X = torch.from_numpy(pre.transform(train_natural))
        for member in members_of(net):
            cast(NgramNet, member).fit_idf(X)
    spec = {"arch": arch, "args": args, "classes": classes, "preprocessor": pre.to_dict()}
    if members > 1:
        spec["ensemble"] = {"members": members, "seeds": seeds}
    return net, spec


def net_args(
    arch: str, cfg: TrainConfig, n_inputs: int, n_features: int, n_classes: int
) -> dict[str, Any]:
    """Constructor arguments of ``arch`` (saved with the weights, so any stage can rebuild it)."""
    if arch == "cnn":
        return {
            "n_classes": n_classes,
            "image_shape": image_shape_for(n_features),
            "channels": cfg.channels,
            "dropout": cfg.dropout,
            "pooled_size": cfg.cnn_grid,
        }
    if arch == "linear":
        return {"n_inputs": n_inputs, "n_classes": n_classes}
    args = {
        "n_inputs": n_inputs,
        "n_classes": n_classes,
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
    }
    if arch == "tabm":
        args.update(k=cfg.k, embedded=[], bins=[], d_embedding=cfg.d_embedding)
    return args


def text_net_args(arch: str, cfg: TrainConfig, pre: Preprocessor, n_classes: int) -> dict[str, Any]:
    """Constructor arguments of a text family: where each text column's ids are in the
    preprocessed matrix, its vocabulary size, and the train.text knobs."""
    t = cfg.text
    args = {
        "n_tabular": pre.n_tabular,
        "text": pre.text_layout(),
        "n_classes": n_classes,
        "embedding": t.embedding,
        "dropout": cfg.dropout,
        "tab_hidden": cfg.hidden[-1],
    }
    if arch == "bilstm":
        return {**args, "hidden": t.hidden, "layers": t.layers, "cell": t.cell}
    return {**args, "buckets": t.buckets}


def embedding_args(
    cfg: TrainConfig, pre: Preprocessor, train_natural: pd.DataFrame, seed: int
) -> dict[str, Any]:
    """TabM's piecewise-linear embeddings: which numeric columns, and their quantile bins on the
    natural training split (after the same preprocessing the network sees)."""
    if cfg.bins == 0 or not pre.numeric:
        return {}
    X = pre.transform(train_natural)
    embedded, bins = quantile_bins(X, list(range(len(pre.numeric))), cfg.bins, seed)
    return {"embedded": embedded, "bins": bins}
