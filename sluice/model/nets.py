"""The networks: an MLP for tabular rows and a small CNN for image-shaped rows (TabM and a linear
model are in ``sluice.model.tabular``), and what every one of them supports.

Each network has a ``features`` body and a ``head`` (the final linear layer), the two names that
``finetune.freeze`` and ``finetune.reinit_head`` refer to.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sluice.errors import SluiceError
from sluice.model.tabular import Linear, TabM
from sluice.model.text import BiLSTM, NgramNet


class MLP(nn.Module):
    """Fully connected layers with batch norm, ReLU and dropout."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def new_head(self, n_classes: int) -> nn.Module:
        return nn.Linear(self.head.in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, n_inputs) -> logits
        return self.head(self.features(x))


class CNN(nn.Module):
    """LeNet-style conv blocks (conv3x3, batch norm, ReLU, pooling) and a linear head.

    Rows of ``height * width`` pixels are reshaped to one-channel images.
    """

    def __init__(
        self,
        n_classes: int,
        image_shape: list[int],
        channels: list[int],
        dropout: float,
        pooled_size: int = 4,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        in_ch, size = 1, min(image_shape)
        for i, out_ch in enumerate(channels):
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU()]
            if i > 0 and size >= 8:  # halve the map while it is still large
                layers.append(nn.MaxPool2d(2))
                size //= 2
            in_ch = out_ch
        # A small pooled grid, not one global average: where a stroke is tells 6 from 9.
        # (A map that already has that size skips the pooling, which would copy it for nothing.)
        pool = nn.Identity() if size == pooled_size else nn.AdaptiveAvgPool2d(pooled_size)
        layers += [pool, nn.Flatten(), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch * pooled_size**2, n_classes)
        # Channels-last convolutions run about 20 % faster on CPU for these small maps.
        self.to(memory_format=torch.channels_last)

    def new_head(self, n_classes: int) -> nn.Module:
        return nn.Linear(self.head.in_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, H*W) -> logits
        x = x.view(x.shape[0], 1, *self.image_shape)
        return self.head(self.features(x))


ARCHS = {
    "mlp": MLP,
    "cnn": CNN,
    "tabm": TabM,
    "linear": Linear,
    "bilstm": BiLSTM,
    "ngram": NgramNet,
}
TABULAR_DEFAULT = "tabm"  # what train.model: auto picks for rows that are not images
TEXT_ARCHS = ("ngram", "bilstm")  # the families that read text columns
TEXT_DEFAULT = "ngram"  # what train.model: auto picks for a table with a text column


def build_net(arch: str, args: dict[str, Any]) -> nn.Module:
    """Rebuild a network from the constructor arguments saved with its weights."""
    return ARCHS[arch](**args)


def image_shape_for(n_features: int) -> list[int] | None:
    """(side, side) when ``n_features`` is a square of at least 16 pixels, else None."""
    side = math.isqrt(n_features)
    return [side, side] if side * side == n_features and side >= 4 else None


def choose_arch(
    requested: str, n_features: int, all_numeric: bool, text_columns: list[str] | None = None
) -> str:
    """Resolve ``train.model``: ``auto`` picks a text family for a table with text columns, the
    CNN for image-shaped rows, else TabM. A tabular family never silently drops a text column,
    and a text family needs one."""
    if text_columns:
        if requested == "auto":
            return TEXT_DEFAULT
        if requested not in TEXT_ARCHS:
            raise SluiceError(
                f"train.model {requested} cannot read text column {text_columns[0]!r}; use "
                f"{' or '.join(TEXT_ARCHS)} (or auto), or drop the column with data.drop_columns"
            )
        return requested
    if requested in TEXT_ARCHS:
        raise SluiceError(
            f"train.model {requested} reads text columns, but the table has none; use auto, "
            "or declare a column as text in data.columns"
        )
    if requested == "cnn" and image_shape_for(n_features) is None:
        raise SluiceError(
            f"train.model cnn needs square images, but rows have {n_features} features; "
            "use train.model: mlp"
        )
    if requested != "auto":
        return requested
    return "cnn" if all_numeric and image_shape_for(n_features) else TABULAR_DEFAULT


def freeze(net: nn.Module, names: list[str]) -> None:
    """Stop gradients for the submodules named in ``names`` (e.g. ``features``, ``features.0``)."""
    for name in names:
        if name.startswith("features") and not any(True for _ in net.features.parameters()):
            continue  # a body without weights (the linear model): nothing to freeze
        try:
            module = net.get_submodule(name)
        except AttributeError:
            known = ", ".join(n for n, _ in net.named_children())
            raise SluiceError(
                f"finetune.freeze: the model has no module '{name}'; top-level modules: {known}"
            ) from None
        for param in module.parameters():
            param.requires_grad_(False)


def set_frozen_to_eval(net: nn.Module) -> None:
    """Keep batch-norm statistics of fully frozen modules fixed while the rest trains."""
    for module in net.modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            module.eval()


def count_parameters(net: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts."""
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    return {"trainable": trainable, "frozen": frozen}


def replace_head(net: nn.Module, n_classes: int) -> None:
    """Give the network a fresh head (new class count, or re-initialised for re-training)."""
    net.head = net.new_head(n_classes)
