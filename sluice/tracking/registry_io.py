"""Registry adapter: log a bundle as an MLflow model, register it, and load it back safely.

The registry is what sluice trusts about a version, not the artifact store: whoever can write
the store can rewrite a bundle together with its own hashes. So each version carries its
bundle's digest as a tag (:data:`BUNDLE_TAG`, written at registration), and
:func:`load_registered`, which ``sluice predict``, ``sluice promote`` and
``finetune.init_from`` go through, refuses a bundle that no longer matches it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from sluice.errors import SluiceError
from sluice.model.bundle import Classifier, bundle_digest, load_bundle, read_spec

log = logging.getLogger(__name__)

SERVING_FILE = Path(__file__).with_name("serving.py")
PACKAGE_DIR = Path(__file__).parents[1]  # the whole sluice package travels with the model
BUNDLE_TAG = "sluice.bundle_sha256"  # a version's bundle digest, recorded at registration


def serving_requirements() -> list[str]:
    """What a serving environment installs (given explicitly: no slow requirement inference)."""
    from importlib.metadata import version

    pins = [
        f"{name}=={version(name)}"
        for name in ("mlflow", "pandas", "numpy", "scipy", "scikit-learn", "safetensors")
    ]
    # torch's local label (+cpu) is not installable from PyPI; the CPU wheel has the same API.
    return [*pins, f"torch=={version('torch').split('+')[0]}", "pyarrow"]


def log_bundle_model(bundle_dir: Path, example: pd.DataFrame, classifier: Classifier) -> str:
    """Log the bundle as a models-from-code pyfunc in the active run; return the model URI."""
    import mlflow

    example = example[classifier.feature_columns].head(5)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(SERVING_FILE),
        artifacts={"bundle": str(bundle_dir)},
        code_paths=[str(PACKAGE_DIR)],
        pip_requirements=serving_requirements(),
        signature=raw_signature(classifier, example),
        input_example=example,
    )
    return info.model_uri


def raw_signature(classifier: Classifier, example: pd.DataFrame):
    """Inputs as a user's CSV has them: numbers for numeric columns, strings for text columns,
    anything for categorical ones (a zip code may arrive as 10001 or "10001"); outputs one
    probability per class, and the ``predicted`` label of a model with a decision threshold."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    def column(col: str, kind: str) -> ColSpec:
        if kind == "numeric":
            return ColSpec("double", col)
        if kind == "text":  # raw text; a missing one is the empty text
            return ColSpec("string", col, required=False)
        return ColSpec(AnyType(), col, required=False)

    types = classifier.preprocessor.feature_types
    inputs = Schema([column(col, kind) for col, kind in types.items()])
    outputs = Schema(
        [
            ColSpec("double", str(c)) if c in classifier.classes else ColSpec("string", c)
            for c in classifier.output_columns
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def register(
    model_uri: str, name: str, run_id: str, tags: dict[str, Any], description: str | None = None
) -> str:
    """Create a registered version of ``name`` from a logged model; return its version."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        # A parallel run may create it first; either way it exists afterwards.
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            client.create_registered_model(name)
    # A tracking server checks that a logged model's URI (models:/m-...) comes with its id.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        tags={k: str(v) for k, v in tags.items()},
        description=description,
        model_id=model_id,
    )
    return str(version.version)


def resolve_version(uri: str, default_name: str):
    """A ModelVersion for ``models:/name@alias``, ``models:/name/3``, ``@alias`` or ``3``."""
    import mlflow

    client = mlflow.MlflowClient()
    ref = uri.removeprefix("models:/")
    if ref.startswith("@") or ref.isdigit():
        ref = f"{default_name}{'' if ref.startswith('@') else '/'}{ref}"
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = ref.rpartition("/")
        return client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in _NOT_FOUND and exc.get_http_status_code() not in (401, 403):
            # A server error is no answer: say so, rather than that the model is missing.
            raise SluiceError(
                f"could not look model {uri} up in the registry ({exc.error_code}: "
                f"{exc.message.splitlines()[0][:200]}); nothing was changed, try again"
            ) from None
        raise SluiceError(f"model {uri} not found in the registry ({exc.message})") from None


# What the registry answers for a missing version (and for a missing alias, or a bad number).
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def bundle_tags(classifier: Classifier) -> dict[str, str]:
    """The tag that pins a version to the bundle it was registered from (its whole digest)."""
    return {BUNDLE_TAG: bundle_digest(classifier.spec)}


def load_registered(uri: str, default_name: str) -> tuple[Classifier, Any]:
    """Download a registered version's bundle and load it (weights only, hash-checked), after
    checking it against the digest the registry recorded for the version."""
    import mlflow

    version = resolve_version(uri, default_name)
    ref = f"models:/{version.name}/{version.version}"
    with tempfile.TemporaryDirectory(prefix="sluice-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=tmp)
        bundle = _bundle_dir(Path(local))
        if bundle is None or not bundle.is_dir():
            raise SluiceError(f"{uri} (version {version.version}) is not a sluice model: no bundle")
        check_registered_digest(ref, read_spec(bundle, check=False), version.tags or {})
        try:
            return load_bundle(bundle), version
        except SluiceError as exc:  # name the version, not the download's scratch folder
            message = str(exc).replace(f"{bundle}{os.sep}", f"{ref} ").replace(str(bundle), ref)
            raise SluiceError(message) from None


def check_registered_digest(ref: str, spec: dict[str, Any], tags: dict[str, str]) -> None:
    """Refuse a bundle whose digest is not the one recorded when version ``ref`` was registered.

    Checked before any weights are read. A version registered by an older sluice has no such
    tag: it loads, with a warning that it cannot be checked.
    """
    recorded = tags.get(BUNDLE_TAG)
    if recorded is None:
        log.warning(
            "%s has no recorded bundle digest (%s; registered by an older sluice): its files "
            "cannot be checked against the registry; re-register it from its run to pin them",
            ref,
            BUNDLE_TAG,
        )
        return
    if bundle_digest(spec) != recorded:
        raise SluiceError(
            f"{ref}: refused, the bundle's digest differs from the one recorded when it was "
            f"registered ({BUNDLE_TAG}); it was changed after registration: do not use it, "
            "re-register the model from a trusted run"
        )


def _bundle_dir(model_dir: Path) -> Path | None:
    """Where the pyfunc's ``bundle`` artifact lies: MLmodel records it (artifacts/<dir name>)."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        return None
    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
    artifacts = flavors.get("python_function", {}).get("artifacts") or {}
    path = artifacts.get("bundle", {}).get("path")
    return model_dir / path if path else None


def load_start_model(init_from: str, model_name: str) -> tuple[Classifier, dict[str, str]]:
    """The model fine-tuning starts from: a bundle directory or a registry URI."""
    if init_from.startswith("models:/"):
        from sluice.tracking.store import use_store

        use_store()
        classifier, version = load_registered(init_from, model_name)
        lineage = {
            "init_from": init_from,
            "parent_version": str(version.version),
            "parent_run_id": version.run_id or "",
        }
        return classifier, lineage
    classifier = load_bundle(init_from)
    return classifier, {
        "init_from": init_from,
        "parent_run_id": classifier.spec.get("lineage", {}).get("run_id", ""),
    }
