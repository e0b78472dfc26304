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

    max_vocab: between(int, 3, 10_000_000) = 30_000
    """Words kept per text column (most frequent first; `<pad>` and `<unk>` too), fitted on the
    natural training split only."""
    min_count: between(int, 1, 1_000_000) = 2
    """Fewest training occurrences of a kept word; rarer words -> `<unk>`."""
    max_len: between(int, 1, 100_000) = 256
    """Tokens kept per text at most: the length kept is the `len_percentile` of the training
    texts' lengths, capped here (the rest of a longer text is cut)."""
    len_percentile: between(float, 1.0, 100.0) = 95.0
    """Percentile of the training texts' lengths that sets the tokens kept per text."""
    embedding: between(int, 1, 4096) = 32
    """Token embedding size."""
    hidden: between(int, 1, 4096) = 64
    """bilstm: state size per direction."""
    layers: between(int, 1, 8) = 1
    """bilstm: stacked bidirectional layers."""
    cell: Literal["lstm", "gru"] = "lstm"
    """bilstm: the recurrent cell."""
    buckets: between(int, 1, 1 << 24) = 1 << 18
    """ngram: hash buckets of word bigrams (beside the word vocabulary); the bundle holds
    (vocabulary + buckets) x embedding floats."""
    pretrain_epochs: between(int, 0, 10_000) = 0
    """bilstm: epochs of next/previous-token language-model pretraining of the embedding and
    encoder on the training split's texts (+ `data.unlabelled_path`) before training, a nested
    MLflow run `pretrain` (0: none; other families ignore it; docs/models.md)."""


class TrainConfig(Section):
    model: Literal["auto", "tabm", "mlp", "linear", "cnn", "bilstm", "ngram"] = "auto"
    """The network family; `auto`: ngram for a table with text, cnn for square images, else
    tabm (ngram and bilstm are the text families)."""
    hidden: Widths = [256, 128]
    """mlp layer widths; tabm: the length is the number of blocks, the largest the block
    width."""
    channels: Widths = [16, 32, 32]
    """cnn: conv channels."""
    k: between(int, 1, 128) = 8
    """tabm: ensemble members sharing one backbone (BatchEnsemble)."""
    bins: between(int, 0, 256) = 48
    """tabm: piecewise-linear embedding bins per numeric column (0: none)."""
    d_embedding: between(int, 1, 256) = 16
    """tabm: embedding size per numeric column."""
    scaler: Literal["power", "standard"] = "power"
    """Tabular numeric columns: `power` (Yeo-Johnson, then standardise) or `standard`; image
    pixels always share one global mean/std."""
    cnn_grid: between(int, 1, 16) = 4
    """cnn: side of the pooled feature grid the head sees (1: global pool)."""
    dropout: between(float, 0.0, 0.95) = 0.3
    """Dropout rate."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    """The optimizer."""
    lr: between(float, 1e-7, 10.0) = 0.003
    """Peak learning rate."""
    weight_decay: between(float, 0.0, 1.0) = 0.0005
    """Weight decay."""
    schedule: Literal["onecycle", "cosine", "step", "none"] = "onecycle"
    """Learning-rate schedule."""
    epochs: between(int, 1, 100_000) = 40
    """Most epochs to train."""
    batch_size: between(int, 1, 1_000_000) = 64
    """Rows per step (over all processes together when `nproc` > 1)."""
    patience: between(int, 1, 100_000) = 10
    """Early stopping: epochs without improvement on val."""
    monitor: Literal["loss", "f1_macro"] = "loss"
    """What early stopping watches on val."""
    sampler: Literal["natural", "balanced"] = "natural"
    """`balanced`: class-balanced batches."""
    augment_shift: between(int, 0, 4) = 1
    """Images: random shifts up to this many pixels (0: off)."""
    threads: between(int, 1, 256) = 1
    """Torch CPU threads (1 is fastest for these small nets; results are bit-identical for a
    given count)."""
    checkpoint_every: between(int, 1, 100_000) = 5
    """Epochs between resumable checkpoints."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: cuda when torch sees a GPU."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """bf16, fp16: autocast mixed precision (fp16 with a gradient scaler); on CPUs without bf16
    instructions fp32 is fastest."""
    deterministic: bool = False
    """cuda: deterministic algorithms (repeatable, somewhat slower)."""
    nproc: between(int, 1, 1024) = 1
    """> 1: data-parallel training, the stage re-runs itself under torchrun with this many
    processes per node (gloo on CPU, NCCL with one GPU each); `batch_size` stays the rows per
    step over all processes together."""
    max_restarts: between(int, 0, 100) = 1
    """`nproc` > 1: torchrun restarts the processes this often after one dies; they resume from
    the last checkpoint, in the same MLflow run."""
    rdzv_endpoint: str | None = None
    """Several nodes: host:port of the rendezvous; start the stage on every node. null: this
    host only, on 127.0.0.1."""
    nnodes: between(int, 1, 1024) = 1
    """Nodes that join `rdzv_endpoint`."""
    folds: between(int, 1, 100) = 1
    """> 1: cross-validated ensemble, one network per stratified fold of train + val (early
    stopping on its held-out fold; each fold's training part resampled by the resample
    section); served averaged."""
    ensemble_seeds: between(int, 1, 100) = 1
    """Networks per fold, with seeds derived from `seed` (a seed ensemble)."""
    text: TextConfig = TextConfig()
    """Text columns: their vocabulary and length, and the text families' (ngram, bilstm)
    networks."""

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
    """Where fine-tuning starts: `models/base`, a bundle folder, or a registry model
    (`models:/<name>@<alias>`, e.g. `models:/sluice-classifier@champion`, or
    `models:/<name>/<version>`)."""
    data: Literal["train", "resampled"] = "train"
    """`train`: the natural training split; `resampled`: the resample stage's output."""
    sampler: Literal["natural", "balanced"] = "balanced"
    """`balanced`: class-balanced batches (as in Kang et al. 2020, "Decoupling ...")."""
    freeze: list[str] = ["features.0", "features.1"]
    """Modules to freeze, under `features` or `head`: the default is the first layer and its
    batch norm; `[features]` freezes the whole body (classifier re-training)."""
    reinit_head: bool = False
    """Start the head from scratch."""
    lr: between(float, 1e-8, 10.0) = 0.0003
    """Peak learning rate."""
    epochs: between(int, 1, 100_000) = 15
    """Most epochs to fine-tune."""
    patience: between(int, 1, 100_000) = 5
    """Early stopping: epochs without improvement on val."""
    nproc: between(int, 0, 1024) = 0
    """Data-parallel processes (0: as `train.nproc`; the other torchrun keys come from
    train)."""

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
