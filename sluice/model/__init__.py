"""Pure core: networks, the training loop, preprocessing and model bundles on disk.

May import ``sluice.data`` and the base modules; never MLflow or ``sluice.tracking``.
"""
