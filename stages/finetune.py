"""Stage finetune: a trained model (models/base or a registry version) -> models/finetuned."""

from sluice import paths
from sluice.errors import report_errors
from sluice.io import read_json
from sluice.stage import run_stage
from sluice.tuned import load_tuned_params


@report_errors
def main() -> None:
    params = load_tuned_params()  # params.yaml + the tune stage's choice
    from sluice.data.columns import feature_types
    from sluice.data.splitting import sorted_labels
    from sluice.model.ensemble import members_of
    from sluice.model.nets import freeze, replace_head
    from sluice.pipeline.ensembling import plan_ensemble
    from sluice.pipeline.runner import TrainingJob, fit_settings, run_training
    from sluice.tracking.registry_io import load_start_model

    cfg = params.finetune
    clf, lineage = load_start_model(cfg.init_from, params.registry.model_name)
    report = read_json(paths.CLEAN_REPORT)
    target = report["target"]
    classes = sorted_labels(list(report["classes"]))
    net, spec = clf.net, dict(clf.spec)
    if classes != clf.classes:  # new label set: the old head cannot express it
        spec["args"] = {**spec["args"], "n_classes": len(classes)}
        lineage["head_replaced"] = "classes changed"
    for member in members_of(net):  # an ensemble: each member, with the same freeze list
        if classes != clf.classes:
            replace_head(member, len(classes))
        elif cfg.reinit_head:
            member.head.reset_parameters()
        freeze(member, cfg.freeze)
    folds = int(spec.get("ensemble", {}).get("folds", 1))  # the start model's folds again
    types = feature_types(report)
    nproc = cfg.nproc or params.train.nproc
    ensemble = plan_ensemble(params, spec, types, folds, cfg.data == "resampled", nproc=nproc)
    data_path = paths.SPLITS["train"] if cfg.data == "train" else paths.RESAMPLED
    job = TrainingJob(
        role="finetuned",
        net=net,
        spec={**spec, "classes": classes, "lineage": lineage},
        train_path=data_path,
        val_path=paths.SPLITS["val"],
        target=target,
        settings=fit_settings(
            params.train,
            params.seed,
            spec["args"].get("image_shape"),
            lr=cfg.lr,
            epochs=cfg.epochs,
            patience=cfg.patience,
            sampler=cfg.sampler,
        ),
        run_params={
            "seed": params.seed,
            "finetune": cfg.model_dump(),
            "train": params.train.model_dump(),
            "init_weights_sha256": clf.spec["weights_sha256"],
        },
        extra_tags={f"sluice.parent.{k}": str(v) for k, v in lineage.items()},
        ensemble=ensemble,
    )
    run_training(job, params)


if __name__ == "__main__":
    from sluice.pipeline.launch import relaunch  # nproc > 1: under torchrun

    run_stage(main, launch=relaunch("finetune"))
