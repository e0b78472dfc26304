"""The train stage's language-model pretraining (``train.text.pretrain_epochs``): which texts,
the unlabelled CSV (``data.unlabelled_path``), and its own MLflow run nested in the train run.

The texts are the natural training split's and the unlabelled CSV's, never a validation or
test row. ``clean`` reads the CSV and writes its normalised texts (sluice.data.unlabelled), a
dep of the tune and train stages; the md5 of those texts (as dvc.lock records it) goes into the
train run's params (``pretrain.unlabelled_md5``), the model's lineage and the checkpoint key.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from sluice.config import Params
from sluice.data.unlabelled import normalized_texts
from sluice.model.pretrain import column_ids, pretrain_text
from sluice.model.training import FitSettings
from sluice.progress import Phase

log = logging.getLogger(__name__)

STAGE = "pretrain"  # the nested run's name and sluice.stage tag


@dataclass
class PretrainPlan:
    """What the train job pretrains on; :meth:`run` does it inside the active train run."""

    epochs: int
    dropout: float
    columns: list[np.ndarray]  # per text column: token ids of the pretraining texts
    training_texts: int
    unlabelled_texts: int
    unlabelled_path: str | None
    unlabelled_md5: str | None

    def summary(self) -> dict[str, Any]:
        """The train run's params and the model's lineage (what the pretraining read)."""
        return {
            "epochs": self.epochs,
            "training_texts": self.training_texts,
            "unlabelled_texts": self.unlabelled_texts,
            "unlabelled_path": self.unlabelled_path,
            "unlabelled_md5": self.unlabelled_md5,
        }

    def fit(self, net: torch.nn.Module, settings: FitSettings, on_epoch=None) -> list[dict]:
        """Pretrain without tracking (the other ranks of a data-parallel job do the same
        seeded work as rank 0, so no rank waits for another before training starts)."""
        return pretrain_text(net, self.columns, settings, self.epochs, self.dropout, on_epoch)

    def run(self, net: torch.nn.Module, settings: FitSettings, experiment_id: str) -> None:
        """Pretrain ``net``'s text parts in a nested run ``pretrain`` with per-epoch
        ``pretrain_perplexity`` and ``pretrain_val_perplexity`` (step = epoch)."""
        import mlflow

        from sluice.tracking.runs import fail_stale_runs, run_tags

        fail_stale_runs(experiment_id, STAGE)
        started = time.perf_counter()
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=STAGE, nested=True, tags=run_tags(STAGE)
        ):
            mlflow.log_params({f"pretrain_{k}": v for k, v in self.summary().items()})

            with Phase("pretrain", self.epochs, "epochs") as bar:
                history = self.fit(net, settings, lambda record: _log_epoch(record, bar))
            seconds = time.perf_counter() - started
            mlflow.log_metric("pretrain_seconds", seconds)
        last = history[-1]
        mlflow.log_metrics(
            {
                "pretrain_seconds": seconds,
                "pretrain_val_perplexity": last["pretrain_val_perplexity"],
            }
        )


def _log_epoch(record: dict[str, float], bar: Phase) -> None:
    """One epoch's perplexities into the nested run (step = epoch), on the ``pretrain`` phase
    and in a log line."""
    import mlflow

    step = int(record["epoch"])
    mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=step)
    bar.update(step, val_perplexity=record["pretrain_val_perplexity"])
    log.info(
        "pretrain epoch %d: perplexity %.1f, validation perplexity %.1f",
        step,
        record["pretrain_perplexity"],
        record["pretrain_val_perplexity"],
    )


def plan_pretraining(
    params: Params,
    spec: dict[str, Any],
    train_natural: pd.DataFrame,
    unlabelled: pd.DataFrame,
    unlabelled_md5: str | None,
) -> PretrainPlan | None:
    """The pretraining of a new bilstm model, or None (``pretrain_epochs`` 0, or another
    family: the n-gram family has no recurrent encoder to pretrain, which a log line says).

    ``unlabelled`` holds the unlabelled CSV's normalised texts as ``clean`` wrote them and
    ``unlabelled_md5`` the md5 of that file (as DVC records it in dvc.lock).
    """
    epochs, path = params.train.text.pretrain_epochs, params.data.unlabelled_path
    if epochs == 0 or spec["arch"] != "bilstm":
        if epochs or path:
            log.info(
                "train.text.pretrain_epochs and data.unlabelled_path are ignored: language-model "
                "pretraining is for train.model bilstm (this model: %s, %d epochs)",
                spec["arch"],
                epochs,
            )
        return None
    pre = spec["preprocessor"]
    names = [t["column"] for t in spec["args"]["text"]]
    columns = [
        column_ids(
            normalized_texts(train_natural[name]) + list(unlabelled.get(name, [])),
            pre["vocab"][name],
            pre["max_len"][name],
        )
        for name in names
    ]
    return PretrainPlan(
        epochs=epochs,
        dropout=params.train.dropout,
        columns=columns,
        training_texts=len(train_natural),
        unlabelled_texts=len(unlabelled),
        unlabelled_path=path,
        unlabelled_md5=unlabelled_md5 if path else None,
    )
