"""Where each stage reads and writes, relative to the project root (dvc.yaml names the same)."""

from pathlib import Path

CLEAN = Path("data/interim/clean.parquet")
CLEAN_REPORT = Path("reports/clean.json")
UNLABELLED = Path("data/interim/unlabelled.parquet")  # data.unlabelled_path's texts
SPLITS = {name: Path(f"data/processed/{name}.parquet") for name in ("train", "val", "test")}
SPLIT_REPORT = Path("reports/split.json")
RESAMPLED = Path("data/processed/train_resampled.parquet")
RESAMPLE_REPORT = Path("reports/resample.json")
MODELS = {"base": Path("models/base"), "finetuned": Path("models/finetuned")}
TRAIN_HISTORY = {role: Path(f"reports/train/{role}.csv") for role in ("base", "finetuned")}
METRICS = Path("reports/metrics.json")
PLOTS = Path("reports/plots")
REGISTERED = Path("reports/registered.json")
CHECKPOINTS = Path(".sluice/checkpoints")
