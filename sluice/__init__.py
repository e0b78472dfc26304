"""sluice: reproducible training of classification models with DVC, PyTorch and MLflow."""

__version__ = "0.1.0"
