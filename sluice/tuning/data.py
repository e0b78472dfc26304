"""What a study's trials train and score on: the natural training split and the validation
split, or the folds of a cross-validation over both.

On a small table the validation split is too few rows to rank trials (114 rows of a 569-row
table: one row moves ROC AUC by 0.002, and many trials score it perfectly), so a validation
split of fewer than ``tune.cv_below_rows`` rows is replaced by k-fold cross-validation over
train + val (``tune.cv_folds``): each fold's training part is resampled and fits its own
preprocessing (``sluice.tuning.trial``), and the trial scores the mean over the held-out folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class TuneData:
    """The natural training split and the validation split, as the stages read them, and the
    (fit, score) pairs of frames a trial trains and scores on: the two splits, or the folds of
    a cross-validation over both."""

    train: pd.DataFrame
    val: pd.DataFrame
    target: str
    types: dict[str, str]
    classes: list[str]
    parts: list[tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=list)
    scored_on: str = ""  # what trials are scored on, in words
    # data.unlabelled_path's texts (clean's copy): a bilstm trial that pretrains reads them too
    unlabelled: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        if not self.parts:
            self.parts = [(self.train, self.val)]
            self.scored_on = f"the validation split ({len(self.val)} rows)"

    def cross_validate(self, folds: int, below_rows: int, seed: int) -> None:
        """Score on ``folds`` folds of train + val when val has fewer than ``below_rows`` rows
        (fewer folds when a class has fewer distinct rows).

        Identical feature rows stay in one fold (as the split keeps them in one split), and
        folds are stratified by label and shuffled with ``seed``.
        """
        from sklearn.model_selection import StratifiedGroupKFold

        from sluice.data.splitting import feature_groups

        if len(self.val) >= below_rows or folds < 2:
            return  # before pooling and hashing: a large table's rows are never touched here
        pool = pd.concat([self.train, self.val], ignore_index=True)
        groups = feature_groups(pool.drop(columns=[self.target]))
        distinct = pool[self.target].astype(str)[~groups.duplicated()]
        k = min(folds, int(distinct.value_counts().min()))
        if k < 2:
            return
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        cuts = splitter.split(pool, pool[self.target].astype(str), groups.to_numpy())
        self.parts = [
            (pool.iloc[fit].reset_index(drop=True), pool.iloc[held].reset_index(drop=True))
            for fit, held in cuts
        ]
        self.scored_on = f"{k}-fold cross-validation over train + val ({len(pool)} rows)"
