"""Stage resample: train split -> rebalanced train split (val and test are never read)."""

import logging

from sluice import paths
from sluice.atomic import outputs_together
from sluice.data.columns import feature_types
from sluice.data.resampling import resample
from sluice.data.synthetic import check_generated
from sluice.errors import report_errors
from sluice.io import read_json, read_table, write_json, write_table
from sluice.stage import run_stage
from sluice.tuned import load_tuned_params

log = logging.getLogger("sluice.resample")


@report_errors
def main() -> None:
    params = load_tuned_params()  # params.yaml + the tune stage's choice
    report = read_json(paths.CLEAN_REPORT)
    train = read_table(paths.SPLITS["train"])
    cfg = params.resample
    if cfg.method == "gan":
        import torch

        torch.set_num_threads(cfg.gan.threads)
    target, types = report["target"], feature_types(report)
    out, info = resample(
        train,
        target,
        types,
        cfg.method,
        cfg.k_neighbors,
        params.seed,
        gan=cfg.gan.model_dump(exclude={"threads"}),
        knn_block=cfg.knn_block,
        max_categories=params.data.max_categories,
        max_memory_gb=cfg.max_memory_gb,
    )
    check = check_generated(train, out, info, target, types, cfg.check_rows, params.seed)
    if check is not None:
        info["synthetic"] = check
    with outputs_together():  # both or neither
        write_table(paths.RESAMPLED, out)
        write_json(paths.RESAMPLE_REPORT, info)
    log.info("resample %s: %s -> %s", info["method"], info["counts_before"], info["counts_after"])
    if check is not None:
        log.info(
            "resample %s, generated rows: real-vs-synthetic AUC %s (0.5: indistinguishable), "
            "nearest real row min %.4g / median %.4g (real rows among themselves: %.4g), "
            "exact copies %.1f %%",
            info["method"],
            check["real_vs_synthetic_auc"],
            check["nearest_real_min"],
            check["nearest_real_median"],
            check["real_nearest_median"],
            100 * check["exact_copies"],
        )


if __name__ == "__main__":
    run_stage(main)
