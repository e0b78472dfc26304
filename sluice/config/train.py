"""The train and finetune sections."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from sluice.config.base import NET_MODULES, Section, between
from sluice.config.base import bad as _bad

_REGISTRY_URI = re.compile(r"models:/[^/@]+(@[\w-]+|/\d+)")
_ENDPOINT = re.compile(r"[\w.-]+:\d{1,5}")


Widths = Annotated[list[between(int, 1, 1_000_000)], Field(min_length=1)]


class TextConfig(Section):
    """Text columns: their vocabulary and length, and the text families' networks."""

    max_vocab: between(int, 3, 10_000_000) = (
        30_000  # words kept per text column (with <pad>, <unk>)
    )
    min_count: between(int, 1, 1_000_000) = 2  # fewest training occurrences of a kept word
    max_len: between(int, 1, 100_000) = 256  # tokens kept per text (at most)
    len_percentile: between(float, 1.0, 100.0) = 95.0  # ... of the training texts' lengths
    embedding: between(int, 1, 4096) = 32  # token embedding size
    hidden: between(int, 1, 4096) = 64  # bilstm: state size per direction
    layers: between(int, 1, 8) = 1  # bilstm: stacked bidirectional layers
    cell: Literal["lstm", "gru"] = "lstm"  # bilstm: recurrent cell
    buckets: between(int, 1, 1 << 24) = 1 << 18  # ngram: hashed word-bigram buckets
    # bilstm: epochs of next/previous-token language-model pretraining (0: none)
    pretrain_epochs: between(int, 0, 10_000) = 0


class TrainConfig(Section):
    model: Literal["auto", "tabm", "mlp", "linear", "cnn", "bilstm", "ngram"] = "auto"
    hidden: Widths = [256, 128]
    channels: Widths = [16, 32, 32]
    k: between(int, 1, 128) = 8
    bins: between(int, 0, 256) = 48
    d_embedding: between(int, 1, 256) = 16
    scaler: Literal["power", "standard"] = "power"
    cnn_grid: between(int, 1, 16) = 4
    dropout: between(float, 0.0, 0.95) = 0.3
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: between(float, 1e-7, 10.0) = 0.003
    weight_decay: between(float, 0.0, 1.0) = 0.0005
    schedule: Literal["onecycle", "cosine", "step", "none"] = "onecycle"
    epochs: between(int, 1, 100_000) = 40
    batch_size: between(int, 1, 1_000_000) = 64
    patience: between(int, 1, 100_000) = 10
    monitor: Literal["loss", "f1_macro"] = "loss"
    sampler: Literal["natural", "balanced"] = "natural"
    augment_shift: between(int, 0, 4) = 1
    threads: between(int, 1, 256) = 1
    checkpoint_every: between(int, 1, 100_000) = 5
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    deterministic: bool = False
    nproc: between(int, 1, 1024) = 1  # > 1: data-parallel processes under torchrun (per node)
    max_restarts: between(int, 0, 100) = 1  # torchrun restarts after a process dies
    rdzv_endpoint: str | None = None  # host:port of a multi-node rendezvous (None: this host)
    nnodes: between(int, 1, 1024) = 1  # nodes that join rdzv_endpoint
    folds: between(int, 1, 100) = 1  # > 1: one network per stratified fold of train + val
    ensemble_seeds: between(int, 1, 100) = 1  # networks per fold, each with its own seed
    text: TextConfig = TextConfig()

    @model_validator(mode="after")
    def _one_process_per_ensemble(self) -> TrainConfig:
        # Ensemble members train one after another in one process: not under torchrun.
        if self.nproc > 1 and (self.folds > 1 or self.ensemble_seeds > 1):
            _bad(
                "train.nproc",
                self.nproc,
                "ensembles (train.folds or train.ensemble_seeds > 1) train in one process; "
                "set train.nproc: 1 or train.folds and train.ensemble_seeds to 1",
            )
        return self

    @model_validator(mode="after")
    def _rendezvous(self) -> TrainConfig:
        if self.rdzv_endpoint is not None and not _ENDPOINT.fullmatch(self.rdzv_endpoint):
            _bad("train.rdzv_endpoint", self.rdzv_endpoint, "write host:port, e.g. node0:29400")
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            _bad("train.nnodes", self.nnodes, "several nodes need train.rdzv_endpoint (host:port)")
        return self


class FinetuneConfig(Section):
    init_from: str = "models/base"
    data: Literal["train", "resampled"] = "train"
    sampler: Literal["natural", "balanced"] = "balanced"
    freeze: list[str] = ["features.0", "features.1"]
    reinit_head: bool = False
    lr: between(float, 1e-8, 10.0) = 0.0003
    epochs: between(int, 1, 100_000) = 15
    patience: between(int, 1, 100_000) = 5
    nproc: between(int, 0, 1024) = 0  # 0: as train.nproc

    @model_validator(mode="after")
    def _known_modules_and_start(self) -> FinetuneConfig:
        for name in self.freeze:
            if name.split(".")[0] not in NET_MODULES:
                _bad("finetune.freeze", name, "name modules under features or head, e.g. features")
        _check_init_from(self.init_from)
        return self


def _check_init_from(init_from: str) -> None:
    """A registry URI (models:/name@alias or models:/name/3), models/base, or a bundle folder."""
    if init_from.startswith("models:/"):
        if not _REGISTRY_URI.fullmatch(init_from):
            _bad(
                "finetune.init_from", init_from, "use models:/<name>@<alias> or models:/<name>/<n>"
            )
    elif init_from != "models/base" and not Path(init_from).is_dir():
        _bad(
            "finetune.init_from",
            init_from,
            "no such model folder; use models/base, a bundle folder or models:/<name>@<alias>",
        )
