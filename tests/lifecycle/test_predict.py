"""Batch prediction from the registry: columns, chunking, errors, atomic output, real process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sluice.cli import app
from sluice.model.bundle import load_bundle

from .conftest import VERSION

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def scored(project):
    """``good`` is champion; a raw CSV of the test rows with extra columns, shuffled order."""
    assert cli("promote").exit_code == 0
    raw = project.test.assign(row_id=[f"r{i}" for i in range(len(project.test))], note="x")
    raw = raw[raw.columns[::-1]]  # column order differs from training
    raw.to_csv(project.root / "data.csv", index=False)
    return project, raw


def expected_proba(project, role: str, frame: pd.DataFrame) -> np.ndarray:
    return load_bundle(project.bundles[role]).predict_proba(frame)


def test_predict_writes_label_and_one_probability_per_class(scored):
    project, raw = scored
    result = cli("predict", "data.csv", "-o", "preds.csv", "--no-progress")
    assert result.exit_code == 0, result.output
    out = pd.read_csv(project.root / "preds.csv", dtype={"predicted": str})
    assert list(out.columns) == ["predicted", "prob_0", "prob_1"]
    assert len(out) == len(raw)
    prob = out[["prob_0", "prob_1"]].to_numpy()
    np.testing.assert_allclose(prob, expected_proba(project, "good", raw), rtol=0, atol=1e-12)
    # good's calibrated probabilities, and its labels under its own decision threshold
    threshold = load_bundle(project.bundles["good"]).threshold
    assert threshold is not None and threshold != 0.5
    assert (out["predicted"] == np.where(prob[:, 1] >= threshold, "1", "0")).all()
    assert (out["predicted"] != np.where(prob[:, 1] > prob[:, 0], "1", "0")).any()
    assert f"version {VERSION['good']}" in result.stderr


def test_small_chunks_give_the_same_predictions(scored):
    project, _ = scored
    assert cli("predict", "data.csv", "-o", "a.csv", "--no-progress").exit_code == 0
    assert cli("predict", "data.csv", "-o", "b.csv", "--chunk-size", "7").exit_code == 0
    a, b = (pd.read_csv(project.root / name) for name in ("a.csv", "b.csv"))
    assert a["predicted"].tolist() == b["predicted"].tolist()
    # The float32 network sums in another order per batch size: equal to ~1e-7, not bytes.
    np.testing.assert_allclose(a.iloc[:, 1:].to_numpy(), b.iloc[:, 1:].to_numpy(), atol=1e-6)


@pytest.mark.parametrize(("model", "role"), [("challenger", "good"), ("3", "good2"), ("1", "weak")])
def test_model_option_picks_the_alias_or_version(scored, model, role):
    project, raw = scored
    result = cli("predict", "data.csv", "-o", "p.csv", "--model", model, "--keep", "row_id")
    assert result.exit_code == 0, result.output
    out = pd.read_csv(project.root / "p.csv")
    assert list(out.columns) == ["row_id", "predicted", "prob_0", "prob_1"]
    assert out["row_id"].tolist() == raw["row_id"].tolist()
    np.testing.assert_allclose(
        out[["prob_0", "prob_1"]].to_numpy(), expected_proba(project, role, raw), atol=1e-12
    )


def test_unseen_category_and_missing_values_are_scored(scored):
    project, raw = scored
    odd = raw.head(5).copy()
    odd["size_band"] = ["huge", None, "small", " medium ", "large"]
    odd.loc[odd.index[0], "mean_radius"] = np.nan
    odd.to_csv(project.root / "odd.csv", index=False)
    assert cli("predict", "odd.csv", "-o", "odd_out.csv").exit_code == 0
    out = pd.read_csv(project.root / "odd_out.csv")
    assert len(out) == 5 and np.isfinite(out[["prob_0", "prob_1"]].to_numpy()).all()


def test_missing_columns_are_named_and_nothing_is_written(scored):
    project, raw = scored
    raw.drop(columns=["mean_area", "size_band"]).to_csv(project.root / "bad.csv", index=False)
    result = cli("predict", "bad.csv", "-o", "out.csv")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bad.csv: missing required column(s)")
    assert "'mean_area'" in result.stderr and "'size_band'" in result.stderr
    assert not (project.root / "out.csv").exists()


def test_a_bad_value_in_a_later_chunk_leaves_the_old_output_untouched(scored):
    project, raw = scored
    bad = raw.astype({"mean_radius": object})
    bad.loc[bad.index[40], "mean_radius"] = "twelve"
    bad.to_csv(project.root / "bad.csv", index=False)
    (project.root / "out.csv").write_text("previous\n")
    result = cli("predict", "bad.csv", "-o", "out.csv", "--chunk-size", "16")
    assert result.exit_code == 1 and "'twelve'" in result.stderr and "rows 33-48" in result.stderr
    assert (project.root / "out.csv").read_text() == "previous\n"
    assert [p.name for p in project.root.iterdir() if p.name.startswith(".out.csv")] == []


def test_an_existing_folder_as_output_is_refused_and_kept(scored):
    project, _ = scored
    results = project.root / "results"
    results.mkdir()
    (results / "raw.csv").write_text("precious\n")
    result = cli("predict", "data.csv", "-o", "results", "--no-progress")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: results is a directory; refusing to replace it")
    assert len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in results.iterdir()] == ["raw.csv"]
    assert (results / "raw.csv").read_text() == "precious\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("", "is empty"), ("a,b\n1,2\n", "missing required column(s)")],
    ids=["missing-file", "empty-file", "wrong-columns"],
)
def test_unusable_input_files_are_refused(scored, content, message):
    project, _ = scored
    if content is not None:
        (project.root / "in.csv").write_text(content)
    result = cli("predict", "in.csv", "-o", "out.csv")
    assert result.exit_code == 1 and message in result.stderr


def test_a_csv_that_is_not_utf8_is_refused_naming_its_line(scored):
    project, raw = scored
    raw.to_csv(project.root / "latin1.csv", index=False)
    lines = (project.root / "latin1.csv").read_bytes().splitlines(keepends=True)
    lines[40] = lines[40].rstrip(b"\n") + b"caf\xe9\n"  # a Latin-1 byte in data row 40
    (project.root / "latin1.csv").write_bytes(b"".join(lines))
    result = cli("predict", "latin1.csv", "-o", "out.csv", "--chunk-size", "16", "--no-progress")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: latin1.csv is not UTF-8 text (byte 0xe9 in line 41 cannot be decoded)"
    )
    assert not (project.root / "out.csv").exists()


def test_header_only_csv_gives_header_only_output(scored):
    project, raw = scored
    raw.head(0).to_csv(project.root / "empty.csv", index=False)
    assert cli("predict", "empty.csv", "-o", "out.csv").exit_code == 0
    assert (project.root / "out.csv").read_text().strip() == "predicted,prob_0,prob_1"


def test_real_process_predict_matches_and_errors_are_one_line(scored):
    project, raw = scored
    ok = project.run_cli("predict", "data.csv", "-o", "sub.csv")
    assert ok.returncode == 0, ok.stderr
    out = pd.read_csv(project.root / "sub.csv")
    np.testing.assert_allclose(
        out[["prob_0", "prob_1"]].to_numpy(), expected_proba(project, "good", raw), atol=1e-12
    )
    raw.drop(columns=["mean_texture"]).to_csv(project.root / "bad.csv", index=False)
    bad = project.run_cli("predict", "bad.csv", "-o", "x.csv")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: bad.csv: missing required")
    assert "Traceback" not in bad.stderr
