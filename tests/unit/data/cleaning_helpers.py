"""Small frames and assertions shared by the cleaning and column-typing tests."""

from __future__ import annotations

import pandas as pd
import pytest

from sluice.config import CleanConfig
from sluice.data.cleaning import clean_table
from sluice.errors import SluiceError

DEFAULT = CleanConfig()
SMALL = CleanConfig(min_class_rows=3)


def frame(n: int = 10, **extra: list) -> pd.DataFrame:
    """``n`` rows of two classes with distinct numeric features, plus ``extra`` columns."""
    data = {"x": [float(i) for i in range(n)], **extra}
    data["y"] = ["a", "b"] * (n // 2)
    return pd.DataFrame(data)


def clean(df: pd.DataFrame, cfg: CleanConfig = SMALL, **kwargs):
    """clean_table with target ``y`` and source ``data.csv``."""
    return clean_table(df, "y", cfg, source="data.csv", **kwargs)


def fails(df: pd.DataFrame, pattern: str, cfg: CleanConfig = SMALL, **kwargs) -> str:
    """Assert clean() raises a one-line SluiceError naming data.csv and matching ``pattern``."""
    with pytest.raises(SluiceError, match=pattern) as exc:
        clean(df, cfg, **kwargs)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("data.csv")
    return message
