"""Use case behind the tune stage: the Optuna study, its trials, and the choice it leaves."""
