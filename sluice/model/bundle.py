"""A model on disk: weights (a plain state dict) + constructor args + preprocessing, no pickles.

Layout of a bundle directory::

    model.pt     torch state dict, loaded with ``weights_only=True``
    model.json   {"arch", "args", "classes", "preprocessor", "weights_sha256", ...}
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sluice.errors import SluiceError
from sluice.io import atomic_path, file_sha256
from sluice.model.nets import build_net
from sluice.model.preprocess import Preprocessor
from sluice.model.training import predict_proba

FORMAT_VERSION = 1


class Classifier:
    """Raw feature columns in, class probabilities out: the unit that is evaluated and served."""

    def __init__(self, net: torch.nn.Module, spec: dict[str, Any]) -> None:
        self.net = net
        self.spec = spec
        self.classes: list[str] = list(spec["classes"])
        self.preprocessor = Preprocessor.from_dict(spec["preprocessor"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.preprocessor.feature_types)

    def predict_proba(self, df: pd.DataFrame, source: str = "input") -> np.ndarray:
        """(n, K) probabilities, columns in ``self.classes`` order."""
        X = torch.from_numpy(self.preprocessor.transform(df, source))
        return predict_proba(self.net, X, dtype=torch.float64).numpy()

    def predict_frame(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        """A frame with one probability column per class (named by class)."""
        return pd.DataFrame(self.predict_proba(df, source), columns=self.classes, index=df.index)


def save_bundle(path: str | Path, net: torch.nn.Module, spec: dict[str, Any]) -> None:
    """Write weights and spec into directory ``path`` atomically (all or nothing)."""
    with atomic_path(path) as tmp:
        tmp.mkdir()
        state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
        torch.save(state, tmp / "model.pt")
        full = {"format": FORMAT_VERSION, **spec, "weights_sha256": file_sha256(tmp / "model.pt")}
        (tmp / "model.json").write_text(json.dumps(full, indent=2) + "\n")


def load_bundle(path: str | Path) -> Classifier:
    """Load a bundle, refusing tampered or non-weight files with a clear error."""
    path = Path(path)
    spec_path, weights_path = path / "model.json", path / "model.pt"
    if not spec_path.exists() or not weights_path.exists():
        raise SluiceError(f"{path}: not a sluice model (model.json and model.pt expected)")
    try:
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as exc:
        raise SluiceError(f"{spec_path}: unreadable model spec ({exc})") from None
    if file_sha256(weights_path) != spec.get("weights_sha256"):
        raise SluiceError(
            f"{weights_path}: refused, its SHA-256 does not match model.json (file changed or "
            "tampered with); re-train or re-download the model"
        )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SluiceError(f"{weights_path}: refused, not a plain weights file ({first})") from None
    net = build_net(spec["arch"], spec["args"])
    net.load_state_dict(state)
    net.eval()
    return Classifier(net, spec)
