"""The Optuna study: a seeded TPE sampler and a median pruner, in memory or in a shared
database, run until it holds ``tune.trials`` finished trials.

What a trial does is ``sluice.tuning.trial``; running the study for the tune stage (and its
workers) inside MLflow runs is ``sluice.tuning.run``. Nothing here talks to MLflow.
"""

from __future__ import annotations

import logging
import time
import warnings

from sluice.config import Params
from sluice.errors import SluiceError
from sluice.progress import Phase

log = logging.getLogger(__name__)

HEARTBEAT_S = 15  # a shared study's running trials report this often


def new_study(params: Params, name: str, worker: bool = False):
    """A study with a seeded TPE sampler and a median pruner on the per-epoch score.

    ``tune.storage`` null keeps it in memory; a storage URL (e.g. PostgreSQL) continues the
    study of the same name, so workers sharing it share its trials. A worker's sampler is
    seeded afresh: with the stage's seed it would repeat the stage's random start-up trials.
    TPE's constant liar (Optuna's default) keeps concurrent workers from sampling the same
    point; a heartbeat lets the others fail the running trials of a worker that died.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = params.tune
    seed = None if worker else params.seed
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if cfg.pruner == "median":
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs
        )
    return optuna.create_study(
        storage=_storage(cfg.storage),
        sampler=sampler,
        pruner=pruner,
        study_name=name,
        direction="minimize" if cfg.metric == "log_loss" else "maximize",
        load_if_exists=cfg.storage is not None,
    )


def _storage(url: str | None):
    """None (in memory), or the database at ``url`` with a heartbeat on running trials."""
    if url is None:
        return None
    import optuna
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError, SQLAlchemyError

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise SluiceError(
            "tune.storage in params.yaml is not a database URL; write it as "
            "postgresql+psycopg://user@host:port/database (or sqlite:///file.db)"
        ) from None
    with warnings.catch_warnings():  # the heartbeat is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            for attempt in range(3):
                try:
                    return optuna.storages.RDBStorage(
                        url, heartbeat_interval=HEARTBEAT_S, grace_period=4 * HEARTBEAT_S
                    )
                except (IntegrityError, ProgrammingError):
                    # Workers that start together on an empty database race to create
                    # Optuna's tables; the loser finds them made on its next try.
                    if attempt == 2:
                        raise
                    time.sleep(1.0 + attempt)
        except (SQLAlchemyError, ImportError) as exc:
            cause = (str(exc).strip() or repr(exc)).splitlines()[0][:200]
            raise SluiceError(
                f"tune.storage {shown} cannot be used ({cause}); check the URL, that the "
                "database server runs, and its password (PGPASSFILE)"
            ) from None


def wait_for_running_trials(study, poll_s: float = 1.0) -> None:
    """Wait until no trial of the shared study is running (other workers' last trials).

    A worker that died stops sending heartbeats; its trials are failed after the grace
    period, so the wait ends.
    """
    import optuna
    from optuna.trial import TrialState

    while running := study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.info("tune: waiting for %d running trial(s) of other workers", len(running))
        optuna.storages.fail_stale_trials(study)
        time.sleep(poll_s)


def optimize(study, objective, params: Params) -> None:
    """Run trials until the study holds ``tune.trials`` finished ones (or the timeout)."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    left = params.tune.trials - len(study.get_trials(deepcopy=False, states=finished))
    if left <= 0:
        return
    with Phase("tune", left, "trials") as bar:
        study.optimize(
            objective,
            n_trials=left,
            timeout=params.tune.timeout or None,
            callbacks=[
                MaxTrialsCallback(params.tune.trials, states=finished),
                _log_trial,
                lambda study, trial: _advance(bar, study, params.tune.metric),
            ],
        )
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done < params.tune.trials:
        log.warning(
            "tune: tune.timeout (%g s) stopped the study after %d of %d trials: the choice "
            "depends on this machine's speed; raise the timeout or lower tune.trials to make "
            "it reproducible",
            params.tune.timeout,
            done,
            params.tune.trials,
        )


def _advance(bar: Phase, study, metric: str) -> None:
    """One more trial on the ``tune`` phase, with the best ``metric`` so far (none yet while
    every trial was pruned or failed)."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    bar.advance(**({f"best_{metric}": study.best_value} if done else {}))


def _log_trial(study, trial) -> None:
    """One line per finished trial (Optuna's own log is set to warnings only)."""
    from optuna.trial import TrialState

    from sluice.config import flatten

    choice = flatten(trial.user_attrs.get("choice", {}))
    if trial.state == TrialState.PRUNED:
        log.info("tune: trial %d pruned at epoch %s %s", trial.number, trial.last_step, choice)
    elif trial.state == TrialState.COMPLETE:
        log.info("tune: trial %d %.4f %s", trial.number, trial.value, choice)
