"""Stage clean: raw data (a CSV or a built-in dataset) -> cleaned table + cleaning report."""

import logging

from sluice import paths
from sluice.atomic import outputs_together
from sluice.config import load_params
from sluice.data.cleaning import clean_table, describe_types, feature_types
from sluice.data.datasets import load_raw
from sluice.data.unlabelled import unlabelled_texts
from sluice.errors import report_errors
from sluice.io import write_json, write_table
from sluice.stage import run_stage

log = logging.getLogger("sluice.clean")


@report_errors
def main() -> None:
    params = load_params()
    raw, target = load_raw(params.data)
    cleaned, report = clean_table(
        raw, target, params.clean, params.data.columns, source=params.data.source
    )
    report["target"] = target
    text_columns = [c for c, kind in feature_types(report).items() if kind == "text"]
    unlabelled = unlabelled_texts(
        params.data.unlabelled_path, text_columns, params.data.max_memory_gb
    )
    with outputs_together():  # all or none
        write_table(paths.CLEAN, cleaned)
        write_table(paths.UNLABELLED, unlabelled)
        write_json(paths.CLEAN_REPORT, report)
    log.info(
        "clean: %d -> %d rows, dropped %s",
        report["rows_in"],
        report["rows_out"],
        {k: v for k, v in report["dropped"].items() if v} or "nothing",
    )
    kept = report["kept"]
    if any(kept.values()):
        log.info(
            "clean: kept %d duplicate rows (repeated observations) and %d rows whose identical "
            "features carry different labels (label noise, learnt as probabilities); identical "
            "feature rows stay in one split. clean.duplicates / clean.conflicting_labels: drop "
            "removes them",
            kept["duplicate"],
            kept["conflicting_label"],
        )
    log.info("clean: column types (see reports/clean.json): %s", describe_types(report))


if __name__ == "__main__":
    run_stage(main)
