"""Pure core: raw data in, clean and split tables out (datasets, cleaning, splitting, resampling).

Imports only the base modules (``sluice.config``, ``sluice.errors``): no torch, no MLflow.
"""
