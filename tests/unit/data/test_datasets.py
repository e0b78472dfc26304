"""Built-in data sets, CSV reading with one-line errors, and load_raw."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sluice.config import DataConfig
from sluice.data.datasets import TARGET, load_builtin, load_raw, read_csv
from sluice.errors import SluiceError


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    """Write ``text`` to ``tmp_path/name`` and return the path."""
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def one_line(exc: pytest.ExceptionInfo[SluiceError]) -> str:
    """The error message, checked to be a single line."""
    message = str(exc.value)
    assert "\n" not in message and "\r" not in message
    return message


@pytest.mark.parametrize("name", ["digits", "digits-lt"])
def test_digits_is_64_pixels_and_ten_classes(name: str) -> None:
    frame = load_builtin(name)
    assert frame.shape == (1797, 65)
    assert list(frame.columns[:2]) == ["px_0_0", "px_0_1"]
    assert frame.columns[63] == "px_7_7" and frame.columns[-1] == TARGET
    assert (frame.drop(columns=TARGET).dtypes == "float64").all()
    assert pd.api.types.is_integer_dtype(frame[TARGET])
    assert sorted(frame[TARGET].unique()) == list(range(10))


def test_digits_pixels_are_row_major() -> None:
    from sklearn.datasets import load_digits

    frame = load_builtin("digits")
    images = load_digits().images
    assert frame.loc[5, "px_2_6"] == images[5, 2, 6]
    assert frame.loc[5, "px_6_2"] == images[5, 6, 2]


def test_breast_cancer_positive_class_is_malignant() -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_builtin("breast-cancer")
    assert frame.shape == (569, 31)
    assert (frame[TARGET] == 1).sum() == 212  # malignant, the ~37% minority
    assert (frame[TARGET] == 0).sum() == 357
    assert (frame[TARGET].to_numpy() == 1 - load_breast_cancer().target).all()
    assert "mean_radius" in frame.columns and "worst_concave_points" in frame.columns
    assert not any(" " in col for col in frame.columns)


def test_unknown_builtin_names_the_choices() -> None:
    with pytest.raises(SluiceError, match=r"unknown built-in dataset 'iris'.*breast-cancer") as exc:
        load_builtin("iris")
    one_line(exc)


def test_read_csv_keeps_pandas_types(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,label\n1,x,yes\n2.5, y ,no\n,?,yes\n")
    frame = read_csv(path)
    assert list(frame.columns) == ["a", "b", "label"]
    assert frame["a"].dtype == "float64" and pd.isna(frame.loc[2, "a"])
    assert frame["b"].tolist() == ["x", " y ", "?"]  # not stripped or coerced here
    assert len(frame) == 3


def test_read_csv_accepts_str_path_and_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffa,b\n1,2\n".encode())
    assert list(read_csv(str(path)).columns) == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", r"data\.csv is empty \(0 bytes\)"),
        (b"\n\n  \n", r"data\.csv has no columns"),
        (b"a,b,c\n", r"data\.csv has a header but no data rows"),
        (b"a,b,c\n1,2,3\n4,5,6\n7,8,9,10\n", r"data\.csv: line 4 has 4 fields, the header has 3"),
        (b"a,b\n1,2,3\n4,5,6\n", r"data\.csv: the data rows have 3 fields, the header has 2"),
        (b'a,b\n1,"open\n', r"data\.csv is not a well-formed CSV \(EOF inside string"),
        (b"a,b\n1,caf\xe9\n", r"data\.csv is not UTF-8 text \(byte 0xe9 in line 2 cannot"),
        (b"a,b\xff\n1,2\n", r"data\.csv is not UTF-8 text \(byte 0xff in line 1 cannot"),
        (b"id,x,id\n1,2,3\n", r"data\.csv: column 'id' appears 2 times in the header"),
    ],
)
def test_read_csv_errors_name_the_file(tmp_path: Path, content: bytes, pattern: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(SluiceError, match=pattern) as exc:
        read_csv(path)
    assert str(path) in one_line(exc)


def test_read_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SluiceError, match=r"nope\.csv not found; set data\.path") as exc:
        read_csv(tmp_path / "nope.csv")
    one_line(exc)


def test_read_csv_directory(tmp_path: Path) -> None:
    with pytest.raises(SluiceError, match=r"is a directory; set data\.path") as exc:
        read_csv(tmp_path)
    one_line(exc)


def test_ragged_row_fix_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,c\n1,2,3\n1,2,3\n1,2,3\n1,2,3,4\n")
    with pytest.raises(SluiceError, match=r"line 5 has 4 fields, the header has 3; fix the row"):
        read_csv(path)


def csv_cfg(path: Path, **kwargs: object) -> DataConfig:
    """A DataConfig for a user CSV with label column ``label``."""
    return DataConfig(path=str(path), target=kwargs.pop("target", "label"), **kwargs)


def test_load_raw_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "id,x,label\n1,0.5,a\n2,0.7,b\n")
    frame, target = load_raw(csv_cfg(path, drop_columns=["id"]))
    assert target == "label"
    assert list(frame.columns) == ["x", "label"]


@pytest.mark.parametrize("name", ["digits-lt", "breast-cancer"])
def test_load_raw_builtin(name: str) -> None:
    frame, target = load_raw(DataConfig(name=name))
    assert target == TARGET and target in frame.columns


def test_load_raw_builtin_drop_columns() -> None:
    frame, _ = load_raw(DataConfig(name="digits", drop_columns=["px_0_0"]))
    assert frame.shape == (1797, 64) and "px_0_0" not in frame.columns


def test_load_raw_missing_target_lists_columns(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(12))
    path = write(tmp_path, f"{header}\n" + ",".join(["1"] * 12) + "\n")
    with pytest.raises(SluiceError, match=r"target column 'label' not found") as exc:
        load_raw(csv_cfg(path))
    message = one_line(exc)
    assert str(path) in message
    assert "'c0', 'c1'" in message and "'c9' (and 2 more)" in message
    assert "'c10'" not in message


def test_load_raw_target_suggests_near_match(tmp_path: Path) -> None:
    path = write(tmp_path, "x, Label\n1,a\n")
    with pytest.raises(SluiceError, match=r"not found \(did you mean ' Label'\?\)"):
        load_raw(csv_cfg(path))


def test_load_raw_unknown_drop_column(tmp_path: Path) -> None:
    path = write(tmp_path, "x,label\n1,a\n")
    with pytest.raises(SluiceError, match=r"data\.drop_columns names column 'idd'") as exc:
        load_raw(csv_cfg(path, drop_columns=["idd"]))
    assert str(path) in one_line(exc)


def test_load_raw_refuses_dropping_target(tmp_path: Path) -> None:
    path = write(tmp_path, "x,label\n1,a\n")
    with pytest.raises(SluiceError, match=r"includes the target column 'label'"):
        load_raw(csv_cfg(path, drop_columns=["label"]))


def test_load_raw_builtin_unknown_drop_column() -> None:
    with pytest.raises(SluiceError, match=r"built-in dataset digits.*'pixel_1'"):
        load_raw(DataConfig(name="digits", drop_columns=["pixel_1"]))


def _short_row(check, path: Path, block: int | None = None) -> tuple[bool, tuple[int, int] | None]:
    """(checked, (line, fields) of the first short row or None) of a short-row check with a
    header of three columns."""
    import re

    try:
        checked = check(path, 3) if block is None else check(path, 3, block)
    except SluiceError as exc:
        line, fields = re.search(r"line (\d+) has (\d+) fields", str(exc)).groups()
        return True, (int(line), int(fields))
    return checked is not False, None


def test_counting_bytes_finds_the_short_row_the_csv_module_finds(tmp_path: Path) -> None:
    """Random files of blank lines, byte-order marks, CRLF and non-ASCII text, read in blocks
    of a few bytes so that lines straddle blocks; files with quotes are left to the csv module."""
    import random

    from sluice.data.datasets import _short_rows_by_bytes, _short_rows_by_csv

    rng, path, compared = random.Random(0), tmp_path / "data.csv", 0
    for _ in range(600):
        lines = [
            ",".join(rng.choice(["", "é", "1", "x y"]) for _ in range(k)) if k else ""
            for k in (rng.choice([0, 1, 2, 3, 3, 3, 4]) for _ in range(rng.randint(0, 10)))
        ]
        newline = rng.choice(["\n", "\r\n"])
        text = newline.join(lines) + rng.choice(["", newline])
        text = ("\ufeff" if rng.random() < 0.2 else "") + text
        text = text.replace("x", '"x"') if rng.random() < 0.1 else text
        path.write_bytes(text.encode())
        _, expected = _short_row(_short_rows_by_csv, path)
        for block in (1, 5, 1 << 20):
            checked, found = _short_row(_short_rows_by_bytes, path, block)
            assert checked or '"' in text
            if checked:
                assert found == expected, (text, block)
                compared += 1
    assert compared > 1000


def test_reviews_is_real_text_with_two_classes() -> None:
    frame = load_builtin("reviews")
    assert list(frame.columns) == ["review", TARGET] and len(frame) == 5000
    assert set(frame[TARGET]) == {"great", "other"}
    assert frame["review"].str.split().str.len().median() > 30


def test_a_quoted_text_longer_than_the_csv_modules_field_limit_is_read(tmp_path: Path) -> None:
    """Python's csv module stops at 128 KiB per field; pandas does not, nor does sluice."""
    long_text = "word, " * 40_000 + '"quoted"'  # 240 KB, with commas and quotes inside
    pd.DataFrame({"note": [long_text, "short"], "y": ["a", "b"]}).to_csv(
        tmp_path / "long.csv", index=False
    )
    frame = read_csv(tmp_path / "long.csv")
    assert frame["note"].tolist() == [long_text, "short"]
