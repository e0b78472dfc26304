"""Stage train: (resampled) train split + val split -> models/base, tracked in MLflow."""

import pandas as pd

from sluice import paths
from sluice.data.columns import feature_types
from sluice.data.resampling import class_weights
from sluice.data.splitting import sorted_labels
from sluice.errors import report_errors
from sluice.io import file_md5, read_json, read_table
from sluice.stage import run_stage
from sluice.tuned import load_tuned_params


@report_errors
def main() -> None:
    params = load_tuned_params()  # params.yaml + the tune stage's choice
    from sluice.model.factory import new_model
    from sluice.pipeline.ensembling import plan_ensemble
    from sluice.pipeline.pretraining import plan_pretraining
    from sluice.pipeline.runner import TrainingJob, fit_settings, run_training

    cfg = params.train
    report = read_json(paths.CLEAN_REPORT)
    target, types = report["target"], feature_types(report)
    classes = sorted_labels(list(report["classes"]))
    train_natural = pd.read_parquet(paths.SPLITS["train"])
    members = cfg.folds * cfg.ensemble_seeds  # > 1: an ensemble (sluice.pipeline.ensembling)
    net, spec = new_model(
        cfg, types, classes, train_natural, params.data.max_categories, params.seed, members
    )
    ensemble = plan_ensemble(params, spec, types, cfg.folds, True, params.resample.class_weights)
    # data.unlabelled_path's texts, from clean: read and hashed only when they can be used
    extra = bool(params.data.unlabelled_path and cfg.text.pretrain_epochs)
    unlabelled = read_table(paths.UNLABELLED) if extra else pd.DataFrame()
    md5 = file_md5(paths.UNLABELLED) if extra else None
    pretrain = plan_pretraining(params, spec, train_natural, unlabelled, md5)  # bilstm
    md5 = pretrain.unlabelled_md5 if pretrain else None
    lineage = {"unlabelled_data_md5": md5} if md5 else {}
    weights = None
    if params.resample.class_weights:
        weights = class_weights(pd.read_parquet(paths.RESAMPLED)[target].astype(str), classes)
    job = TrainingJob(
        role="base",
        net=net,
        spec={**spec, "target": target, "lineage": lineage},
        train_path=paths.RESAMPLED,
        val_path=paths.SPLITS["val"],
        target=target,
        settings=fit_settings(cfg, params.seed, spec["args"].get("image_shape"), weights),
        run_params={
            "seed": params.seed,
            "data": params.data.model_dump(),
            "resample": params.resample.model_dump(),
            "train": cfg.model_dump(),
            "arch": spec["arch"],
            **({"pretrain": pretrain.summary()} if pretrain else {}),  # keys the checkpoint
        },
        extra_tags={},
        ensemble=ensemble,
        pretrain=pretrain,
    )
    run_training(job, params)


if __name__ == "__main__":
    from sluice.pipeline.launch import relaunch  # nproc > 1: under torchrun

    run_stage(main, launch=relaunch("train"))
