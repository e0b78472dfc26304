"""Stage tune: train + val splits -> the chosen params (reports/tuned.yaml), every trial in MLflow.

Skipped at once when ``tune.trials`` is 0: the choice is then empty and the stages downstream
use params.yaml as it is (nothing heavy is imported for that).

``python -m stages.tune --worker`` adds trials to the shared study (``tune.storage``) from
another process or machine, with the same params and data, and writes nothing: the stage
(``dvc repro``) waits for the workers' running trials and writes the choice of the whole study.
"""

import sys

from sluice.config import load_params
from sluice.errors import SluiceError, report_errors
from sluice.stage import run_stage


@report_errors
def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--worker"]):
        raise SluiceError(
            f"unexpected arguments {' '.join(args)!r} to stages.tune; run it without any (the "
            "DVC stage) or with --worker (a worker of the shared study in tune.storage)"
        )
    params = load_params()
    if args == ["--worker"]:
        from sluice.tuning.run import run_worker

        run_worker(params)
        return
    if params.tune.trials == 0:
        from sluice.tuning.choice import write_skipped

        write_skipped("tune.trials is 0")
        return
    from sluice.tuning.run import run_tuning

    run_tuning(params)


if __name__ == "__main__":
    run_stage(main)
