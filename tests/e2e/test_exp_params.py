"""`dvc exp run -S` with numbers spelt the way users type them (and DVC writes them back)."""

import yaml
from conftest import make_project

# DVC writes these into params.yaml as YAML 1.2 (`1e-06`); a YAML 1.1 reader sees text.
OVERRIDES = {
    "train.lr": "0.000001",
    "train.epochs": "2",
    "finetune.lr": "3E-4",
    "train.weight_decay": ".5",
    "evaluate.bootstrap": "1_000",
}


def test_exp_run_accepts_every_number_spelling(tmp_path):
    params = {"data": {"name": "breast-cancer"}, "evaluate": {"reference": [], "bootstrap": 0}}
    project = make_project(tmp_path / "proj", params)
    sets = [arg for key, value in OVERRIDES.items() for arg in ("-S", f"{key}={value}")]
    project.run("dvc", "exp", "run", *sets)
    text = (project.path / "params.yaml").read_text()
    assert "lr: 1e-06" in text  # as DVC wrote it: text to a YAML 1.1 reader
    assert yaml.safe_load(text)["train"]["lr"] == "1e-06"
    history = (project.path / "reports/train/base.csv").read_text().splitlines()
    assert len(history) == 1 + 2  # header and the two epochs asked for
    base = project.read_json("models/base/model.json")
    assert base["args"]["n_classes"] == 2
    runs = project.mlflow_client().search_runs(
        [project.mlflow_client().get_experiment_by_name("sluice").experiment_id],
        filter_string="tags.`sluice.role` = 'base'",
    )
    assert float(runs[0].data.params["train.lr"]) == 1e-06
    assert float(runs[0].data.params["train.weight_decay"]) == 0.5
    assert runs[0].data.params["train.epochs"] == "2"
