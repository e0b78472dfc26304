"""Stage tune: train + val splits -> the chosen params (reports/tuned.yaml), every trial in MLflow.

Skipped at once when ``tune.trials`` is 0: the choice is then empty and the stages downstream
use params.yaml as it is (nothing heavy is imported for that).
"""

from sluice.config import load_params
from sluice.errors import report_errors
from sluice.stage import run_stage


@report_errors
def main() -> None:
    params = load_params()
    if params.tune.trials == 0:
        from sluice.pipeline.tune_choice import write_skipped

        write_skipped("tune.trials is 0")
        return
    from sluice.pipeline.tuning import run_tuning

    run_tuning(params)


if __name__ == "__main__":
    run_stage(main)
