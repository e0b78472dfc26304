"""Reading a CSV too large for memory: refused in one line, before it is read, by an estimate
from the file's size and its first rows (data.max_memory_gb; null: a share of available memory)."""

import numpy as np
import pandas as pd
import pytest

from sluice.config import DataConfig
from sluice.data import memory
from sluice.data.datasets import load_raw
from sluice.data.memory import estimate_read_memory
from sluice.errors import SluiceError


def _csv(path, rows=2000, text=False, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(5)})
    frame["plan"] = rng.choice(["basic", "pro"], rows)
    if text:
        words = np.array(["the", "food", "was", "fine", "but", "service", "slow", "and", "cold"])
        frame["review"] = [" ".join(rng.choice(words, 12)) for _ in range(rows)]
    frame["label"] = rng.choice(["yes", "no"], rows)
    frame.to_csv(path, index=False)
    return path


def test_a_csv_over_the_budget_is_refused_before_it_is_read(tmp_path):
    path = _csv(tmp_path / "big.csv")
    with pytest.raises(SluiceError) as err:
        load_raw(DataConfig(path=str(path), target="label", max_memory_gb=1e-5))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path} is ") and "; reading and cleaning it needs about " in message
    assert "more than the budget of 10.0 kB (data.max_memory_gb)" in message
    assert "it does not stream" in message and message.endswith("raise data.max_memory_gb")


def test_a_csv_within_the_budget_is_read(tmp_path):
    path = _csv(tmp_path / "ok.csv")
    frame, target = load_raw(DataConfig(path=str(path), target="label", max_memory_gb=1.0))
    assert target == "label" and len(frame) == 2000
    frame, _ = load_raw(DataConfig(path=str(path), target="label"))  # null: available memory
    assert len(frame) == 2000


def test_the_estimate_scales_a_sample_of_the_head_to_the_whole_file(tmp_path, monkeypatch):
    one = estimate_read_memory(_csv(tmp_path / "one.csv"))
    pd.concat([pd.read_csv(tmp_path / "one.csv")] * 8).to_csv(tmp_path / "eight.csv", index=False)
    monkeypatch.setattr(memory, "SAMPLE_BYTES", (tmp_path / "one.csv").stat().st_size)
    eight = estimate_read_memory(tmp_path / "eight.csv")  # only an eighth of it parsed
    assert 7.5 * one < eight < 8.5 * one


def test_long_text_counts_more_per_byte_than_numbers(tmp_path):
    plain = _csv(tmp_path / "plain.csv")
    text = _csv(tmp_path / "text.csv", text=True)
    per_byte = [estimate_read_memory(p) / p.stat().st_size for p in (plain, text)]
    assert per_byte[1] > per_byte[0] > 1
