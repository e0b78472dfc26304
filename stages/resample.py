"""Stage resample: train split -> rebalanced train split (val and test are never read)."""

import logging

from sluice import paths
from sluice.config import load_params
from sluice.data.columns import feature_types
from sluice.data.resampling import resample
from sluice.errors import report_errors
from sluice.io import read_json, read_table, write_json, write_table
from sluice.stage import run_stage

log = logging.getLogger("sluice.resample")


@report_errors
def main() -> None:
    params = load_params()
    report = read_json(paths.CLEAN_REPORT)
    train = read_table(paths.SPLITS["train"])
    out, info = resample(
        train,
        report["target"],
        feature_types(report),
        params.resample.method,
        params.resample.k_neighbors,
        params.seed,
    )
    write_table(paths.RESAMPLED, out)
    write_json(paths.RESAMPLE_REPORT, info)
    log.info("resample %s: %s -> %s", info["method"], info["counts_before"], info["counts_after"])


if __name__ == "__main__":
    run_stage(main)
