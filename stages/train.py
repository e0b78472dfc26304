"""Stage train: (resampled) train split + val split -> models/base, tracked in MLflow."""

from dataclasses import asdict

import pandas as pd

from sluice import paths
from sluice.cleaning import feature_types
from sluice.config import load_params
from sluice.errors import report_errors
from sluice.io import read_json
from sluice.preprocess import Preprocessor
from sluice.resampling import class_weights
from sluice.splitting import sorted_labels
from sluice.stage import run_stage


@report_errors
def main() -> None:
    params = load_params()
    import torch

    from sluice.nets import build_net, choose_arch, image_shape_for
    from sluice.runner import TrainingJob, fit_settings, run_training

    report = read_json(paths.CLEAN_REPORT)
    target, types = report["target"], feature_types(report)
    classes = sorted_labels(list(report["classes"]))
    train_natural = pd.read_parquet(paths.SPLITS["train"])
    all_numeric = all(t == "numeric" for t in types.values())
    arch = choose_arch(params.train.model, len(types), all_numeric)
    shape = image_shape_for(len(types)) if arch == "cnn" else None
    # Fitted on the natural training split only: val and test never shape preprocessing.
    scaling = (
        "global" if arch == "cnn" else {"power": "power", "standard": "column"}[params.train.scaler]
    )
    pre = Preprocessor(types, scaling, params.data.max_categories)
    pre.fit(train_natural)
    cfg = params.train
    if arch == "cnn":
        args = {
            "n_classes": len(classes),
            "image_shape": shape,
            "channels": cfg.channels,
            "dropout": cfg.dropout,
            "pooled_size": cfg.cnn_grid,
        }
    else:
        args = {
            "n_inputs": pre.n_outputs,
            "n_classes": len(classes),
            "hidden": cfg.hidden,
            "dropout": cfg.dropout,
        }
    torch.manual_seed(params.seed)
    net = build_net(arch, args)
    weights = None
    if params.resample.class_weights:
        weights = class_weights(pd.read_parquet(paths.RESAMPLED)[target].astype(str), classes)
    job = TrainingJob(
        role="base",
        net=net,
        spec={
            "arch": arch,
            "args": args,
            "classes": classes,
            "preprocessor": pre.to_dict(),
            "target": target,
        },
        train_path=paths.RESAMPLED,
        val_path=paths.SPLITS["val"],
        target=target,
        settings=fit_settings(cfg, params.seed, shape, weights),
        run_params={
            "seed": params.seed,
            "data": asdict(params.data),
            "resample": asdict(params.resample),
            "train": asdict(cfg),
            "arch": arch,
        },
        extra_tags={},
    )
    run_training(job, params)


if __name__ == "__main__":
    run_stage(main)
