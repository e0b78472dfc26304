"""Stage split: cleaned table -> stratified train / val / test (train long-tailed for digits-lt)."""

import logging

from sluice import paths
from sluice.atomic import outputs_together
from sluice.config import load_params
from sluice.data.splitting import cut_long_tail, sorted_labels, stratified_split
from sluice.errors import report_errors
from sluice.io import read_json, read_table, write_json, write_table
from sluice.stage import run_stage

log = logging.getLogger("sluice.split")


@report_errors
def main() -> None:
    params = load_params()
    target = read_json(paths.CLEAN_REPORT)["target"]
    df = read_table(paths.CLEAN)
    train, val, test = stratified_split(
        df, target, params.split.val_size, params.split.test_size, params.seed
    )
    if params.data.path is None and params.data.name == "digits-lt":
        classes = sorted_labels(df[target])
        train = cut_long_tail(train, target, classes, params.data.imbalance_factor, params.seed)
    counts = {}
    with outputs_together():  # new splits all together, never beside old ones
        for name, part in (("train", train), ("val", val), ("test", test)):
            write_table(paths.SPLITS[name], part)
            values = part[target].value_counts().sort_index()
            counts[name] = {str(k): int(v) for k, v in values.items()}
        write_json(
            paths.SPLIT_REPORT,
            {"rows": {k: sum(v.values()) for k, v in counts.items()}, "class_counts": counts},
        )
    log.info("split: train %d, val %d, test %d rows", len(train), len(val), len(test))


if __name__ == "__main__":
    run_stage(main)
