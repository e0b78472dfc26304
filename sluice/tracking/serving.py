"""The MLflow pyfunc model, logged as code ("models from code"): nothing is pickled.

MLflow loads this file, which declares the model with ``set_model``; the weights and
preprocessing come from the ``bundle`` artifact (a state dict and JSON, see sluice.model.bundle).

Trust boundary: this file and the ``sluice`` package beside it are code stored with the model,
and ``mlflow models serve`` imports them, so write access to the artifact store is code
execution on the server. The served model sees only its own artifacts, not the registry: it
checks the bundle's own hashes (spec and weights), not the digest the registry recorded at
registration (``sluice.bundle_sha256``), which only sluice's loaders of registered versions
check.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SluiceModel(PythonModel):
    """Raw feature columns in; out, one (calibrated) probability column per class, named by the
    class, and for a binary model that carries a decision threshold a ``predicted`` column: the
    label under that threshold (``Classifier.output_columns``)."""

    def load_context(self, context) -> None:
        from sluice.model.bundle import load_bundle

        self.classifier = load_bundle(Path(context.artifacts["bundle"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.classifier.output_frame(pd.DataFrame(model_input))


mlflow.models.set_model(SluiceModel())
