"""Use cases behind the ``sluice`` command: gated promotion, rollback and prediction."""
