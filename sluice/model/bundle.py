"""A model on disk: weights (a plain state dict) + constructor args + preprocessing, no pickles.

Layout of a bundle directory::

    model.pt     torch state dict, loaded with ``weights_only=True``
    model.json   {"arch", "args", "classes", "preprocessor", "weights_sha256", ...,
                  "calibration": {"temperature", ...}, "decision": {"rule", "threshold", ...},
                  "ensemble": {"members", "folds", ...} (ensembles only)}

An ensemble (``sluice.model.ensemble``) is one state dict too: ``arch`` and ``args`` describe
each member, ``ensemble.members`` how many there are.

``calibration`` and ``decision`` are fitted on the validation split after training; a bundle
without them (an older model) predicts with temperature 1 and the argmax.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sluice.errors import SluiceError
from sluice.io import atomic_dir, file_sha256
from sluice.model.ensemble import build_model
from sluice.model.inference import predict_proba
from sluice.model.preprocess import Preprocessor

FORMAT_VERSION = 1


class Classifier:
    """Raw feature columns in, class probabilities out: the unit that is evaluated and served."""

    def __init__(self, net: torch.nn.Module, spec: dict[str, Any]) -> None:
        self.net = net
        self.spec = spec
        self.classes: list[str] = list(spec["classes"])
        self.preprocessor = Preprocessor.from_dict(spec["preprocessor"])
        self.temperature: float = float(spec.get("calibration", {}).get("temperature", 1.0))
        threshold = spec.get("decision", {}).get("threshold")
        # The threshold is on the probability of classes[1]: binary models only.
        self.threshold: float | None = None if threshold is None else float(threshold)
        _check_decision(self.temperature, self.threshold, len(self.classes))

    @property
    def feature_columns(self) -> list[str]:
        return list(self.preprocessor.feature_types)

    def predict_proba(
        self, df: pd.DataFrame, source: str = "input", calibrated: bool = True
    ) -> np.ndarray:
        """(n, K) probabilities, columns in ``self.classes`` order; ``calibrated=False`` gives
        the network's own (temperature 1)."""
        X = torch.from_numpy(self.preprocessor.transform(df, source))
        temperature = self.temperature if calibrated else 1.0
        return predict_proba(self.net, X, dtype=torch.float64, temperature=temperature).numpy()

    def predict_labels(self, prob: np.ndarray) -> np.ndarray:
        """Class names for (n, K) probabilities: ``classes[1]`` where its probability reaches
        the decision threshold (binary models that carry one), else the most probable class."""
        if self.threshold is not None:
            index = (prob[:, 1] >= self.threshold).astype(np.int64)
        else:
            index = prob.argmax(axis=1)
        return np.asarray(self.classes, dtype=object)[index]

    def predict_frame(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        """A frame with one probability column per class (named by class)."""
        return pd.DataFrame(self.predict_proba(df, source), columns=self.classes, index=df.index)

    @property
    def output_columns(self) -> list[str]:
        """What the served model returns: a probability column per class (named by class), and
        ``predicted`` when the model carries a decision threshold."""
        return [*self.classes, *([PREDICTED] if self.threshold is not None else [])]

    def output_frame(self, df: pd.DataFrame, source: str = "input") -> pd.DataFrame:
        """The served model's answer (:attr:`output_columns`)."""
        out = self.predict_frame(df, source)
        if self.threshold is not None:
            out[PREDICTED] = self.predict_labels(out[self.classes].to_numpy())
        return out


PREDICTED = "predicted"  # the label column of predictions


def _check_decision(temperature: float, threshold: float | None, n_classes: int) -> None:
    if not (np.isfinite(temperature) and temperature > 0):
        raise SluiceError(f"model.json: calibration temperature {temperature} is not positive")
    if threshold is not None and (n_classes != 2 or not np.isfinite(threshold)):
        raise SluiceError(
            f"model.json: a decision threshold ({threshold}) needs a binary model and a "
            f"finite value ({n_classes} classes here); re-train the model"
        )


def save_bundle(path: str | Path, net: torch.nn.Module, spec: dict[str, Any]) -> None:
    """Write weights and spec into directory ``path`` atomically (all or nothing).

    An existing ``path`` is replaced only when it holds a bundle (never another folder).
    """
    with atomic_dir(path, owned=is_bundle) as tmp:
        tmp.mkdir()
        state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
        torch.save(state, tmp / "model.pt")
        full = {"format": FORMAT_VERSION, **spec, "weights_sha256": file_sha256(tmp / "model.pt")}
        full["spec_sha256"] = spec_digest(full)
        (tmp / "model.json").write_text(json.dumps(full, indent=2) + "\n")


def update_spec(path: str | Path, **fields: Any) -> None:
    """Add or replace top-level fields of bundle ``path``'s spec (e.g. its measured ``cost``),
    with a new digest; the weights stay as they are."""
    from sluice.io import write_json

    spec_path = Path(path) / "model.json"
    spec = {**json.loads(spec_path.read_text()), **fields}
    spec["spec_sha256"] = spec_digest(spec)
    write_json(spec_path, spec)


def spec_digest(spec: dict[str, Any]) -> str:
    """SHA-256 of a bundle's spec as canonical JSON (sorted keys), its own digest left out: it
    covers the classes, the preprocessing (a text vocabulary included), the calibration and the
    decision threshold, and through ``weights_sha256`` the weights."""
    body = {k: v for k, v in spec.items() if k != "spec_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_bundle(path: Path) -> bool:
    """Whether folder ``path`` holds a sluice model bundle (its spec file)."""
    return (path / "model.json").is_file()


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
    if "spec_sha256" in spec and spec_digest(spec) != spec["spec_sha256"]:
        raise SluiceError(
            f"{spec_path}: refused, its content does not match its SHA-256 (edited or tampered "
            "with: classes, preprocessing, vocabulary, calibration or threshold); re-train or "
            "re-download the model"
        )
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
    net = build_model(spec)  # one network, or an ensemble of them
    net.load_state_dict(state)
    net.eval()
    return Classifier(net, spec)
