"""A model on disk: weights (a plain state dict) + constructor args + preprocessing, no pickles.

Layout of a bundle directory::

    model.safetensors  the state dict as safetensors: tensors and a JSON header, nothing to
                       unpickle (bundles of format 1 hold ``model.pt`` instead, a torch file
                       loaded with ``weights_only=True``)
    model.json         {"format", "arch", "args", "classes", "preprocessor", "weights_sha256",
                        ..., "calibration": {"temperature", ...},
                        "decision": {"rule", "threshold", ...},
                        "ensemble": {"members", "folds", ...} (ensembles only), "spec_sha256"}

An ensemble (``sluice.model.ensemble``) is one state dict too: ``arch`` and ``args`` describe
each member, ``ensemble.members`` how many there are.

``calibration`` and ``decision`` are fitted on the validation split after training; a bundle
without them (an older model) predicts with temperature 1 and the argmax.

These two files are the whole bundle: :func:`bundle_digest` covers both, and the registry keeps
it for each registered version (``sluice.tracking.registry_io``), since a bundle's own hashes
can be recomputed by whoever can write it.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sluice.atomic import atomic_dir
from sluice.errors import SluiceError
from sluice.io import file_sha256
from sluice.model.ensemble import build_model
from sluice.model.inference import predict_proba
from sluice.model.preprocess import Preprocessor

FORMAT_VERSION = 2  # 2: model.safetensors; 1: model.pt (still read)
WEIGHTS = "model.safetensors"
LEGACY_WEIGHTS = "model.pt"
SPEC = "model.json"


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

    An existing ``path`` is replaced only when it holds a bundle (never another folder). Each
    tensor is copied on its own, on the CPU and contiguous, as safetensors requires: tied
    tensors (one storage under two names) become two equal copies, which ``load_state_dict``
    puts back where they came from.
    """
    from safetensors.torch import save_file

    with atomic_dir(path, owned=is_bundle) as tmp:
        tmp.mkdir()
        state = {
            k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()
        }
        save_file(state, tmp / WEIGHTS)
        full = {"format": FORMAT_VERSION, **spec, "weights_sha256": file_sha256(tmp / WEIGHTS)}
        full["format"] = FORMAT_VERSION  # a spec copied from an older bundle says 1
        full["spec_sha256"] = spec_digest(full)
        (tmp / SPEC).write_text(json.dumps(full, indent=2) + "\n")


def update_spec(path: str | Path, **fields: Any) -> None:
    """Add or replace top-level fields of bundle ``path``'s spec (e.g. its measured ``cost``),
    with a new digest; the weights stay as they are."""
    from sluice.io import write_json

    spec_path = Path(path) / SPEC
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


def bundle_digest(spec: dict[str, Any]) -> str:
    """The digest of a whole bundle, computed from its spec: the spec covers every field that
    shapes a prediction and, through ``weights_sha256`` (which :func:`read_weights` checks), the
    weights file. Registration records it, so that an edit made in the artifact store, where
    the bundle's own hashes can be recomputed, is still found."""
    return spec_digest(spec)


def is_bundle(path: Path) -> bool:
    """Whether folder ``path`` holds a sluice model bundle (its spec file)."""
    return (path / SPEC).is_file()


def read_spec(path: str | Path, check: bool = True) -> dict[str, Any]:
    """Bundle ``path``'s spec, parsed and (``check``) checked against its own ``spec_sha256``;
    unchecked for a caller that holds a digest it trusts more (the registry's)."""
    spec_path = Path(path) / SPEC
    if not spec_path.is_file():
        raise SluiceError(f"{path}: not a sluice model ({SPEC} and {WEIGHTS} expected)")
    try:
        spec = json.loads(spec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SluiceError(f"{spec_path}: unreadable model spec ({exc})") from None
    if not isinstance(spec, dict):
        raise SluiceError(f"{spec_path}: unreadable model spec (not a JSON object)")
    if check and "spec_sha256" in spec and spec_digest(spec) != spec["spec_sha256"]:
        raise SluiceError(
            f"{spec_path}: refused, its content does not match its SHA-256 (edited or tampered "
            "with: classes, preprocessing, vocabulary, calibration or threshold); re-train or "
            "re-download the model"
        )
    return spec


def read_weights(path: str | Path, spec: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Bundle ``path``'s state dict, refused unless its bytes hash to ``spec["weights_sha256"]``.

    The bytes are read once, then hashed and parsed: what is parsed is what was checked. A
    format-2 bundle's safetensors file is parsed without unpickling anything; a format-1
    bundle's ``model.pt`` with ``weights_only=True``, which refuses any object but tensors.
    """
    fmt = spec.get("format", 1)
    if fmt not in (1, FORMAT_VERSION):
        raise SluiceError(
            f"{path}: a bundle of format {fmt!r}, which this sluice cannot read (it reads 1 and "
            f"{FORMAT_VERSION}); upgrade sluice or re-train the model"
        )
    legacy = fmt == 1
    weights_path = Path(path) / (LEGACY_WEIGHTS if legacy else WEIGHTS)
    if not weights_path.is_file():
        raise SluiceError(f"{path}: not a sluice model ({SPEC} and {weights_path.name} expected)")
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != spec.get("weights_sha256"):
        raise SluiceError(
            f"{weights_path}: refused, its SHA-256 does not match {SPEC} (file changed or "
            "tampered with); re-train or re-download the model"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        if legacy:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return load(data)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SluiceError(f"{weights_path}: refused, not a plain weights file ({first})") from None


def load_bundle(path: str | Path) -> Classifier:
    """Load a bundle, refusing tampered or non-weight files with a clear error."""
    spec = read_spec(path)
    state = read_weights(path, spec)
    net = build_model(spec)  # one network, or an ensemble of them
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SluiceError(
            f"{path}: its weights do not fit the network {SPEC} describes ({first}); "
            "re-train the model"
        ) from None
    net.eval()
    return Classifier(net, spec)
