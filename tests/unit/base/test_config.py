"""params.yaml parsing: defaults, unknown keys, wrong types and ranges are refused by name."""

import re
from pathlib import Path

import pytest
from conftest import params_error

from sluice.config import Params, load_params
from sluice.errors import SluiceError

ROOT = Path(__file__).resolve().parents[3]


def test_project_params_file_parses_with_every_key_documented():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.name == "digits-lt"
    assert params.registry.model_name
    text = (ROOT / "params.yaml").read_text()
    for section in ("data", "clean", "split", "resample", "train", "finetune", "evaluate"):
        for key in type(getattr(params, section)).model_fields:
            assert f"  {key}:" in text, f"{section}.{key} is not in params.yaml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trian: {}\n", "unknown key 'trian'"),
        ("train:\n  lrr: 0.1\n", "unknown key 'train.lrr'"),
        ("train:\n  lr: fast\n", "'train.lr'; expected a number"),
        ("train:\n  epochs: 2.5\n", "'train.epochs'; expected an integer"),
        ("train:\n  epochs: 0\n", "'train.epochs'; use a value between"),
        ("resample:\n  method: smoteish\n", "'resample.method'; use one of none"),
        ("finetune:\n  freeze: features\n", "'finetune.freeze'; expected a list"),
        ("data:\n  path: x.csv\n", "'data.target'"),
        ("split:\n  val_size: 0.5\n  test_size: 0.5\n", "'split.val_size'"),
        ("promote:\n  metric: auc\n", "bad value 'auc' for 'promote'"),
        ("seed: [1]\n", "'seed'; expected an integer"),
        ("train: [1, 2]\n", "'train'; expected a mapping"),
        ("- a\n- b\n", "must be a mapping"),
        ("train: {lr: [\n", "not valid YAML"),
    ],
)
def test_bad_params_are_refused_with_the_key(tmp_path, text, message):
    pattern = message.replace("[", r"\[").replace(".", r"\.")
    assert re.search(pattern, params_error(tmp_path, text))


def test_missing_params_file(tmp_path):
    with pytest.raises(SluiceError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_values_are_typed(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "seed: 3\ntrain:\n  lr: 1\n  hidden: [8, 4]\npromote:\n  guards: {f1_macro: 0}\n"
    )
    params = load_params(path)
    assert params.seed == 3
    assert params.train.lr == 1.0 and isinstance(params.train.lr, float)
    assert params.train.hidden == [8, 4]
    assert params.promote.guards == {"f1_macro": 0.0}
    assert params.finetune.lr == 0.0003  # untouched sections keep their defaults


def test_an_optional_bounded_value_out_of_range_names_its_bounds():
    """``between(...) | None``: pydantic keeps the bounds inside the union."""
    from pydantic import ValidationError

    from sluice.config import Section, between
    from sluice.params_yaml import format_error

    class Optional(Section):
        every: between(int, 1, 10) | None = None

    with pytest.raises(ValidationError) as caught:
        Optional.model_validate({"every": 0})
    line = format_error(caught.value.errors()[0], Optional)
    assert line == "params.yaml: bad value 0 for 'every'; use a value between 1 and 10"


def test_params_are_read_as_dvc_reads_them_yaml_1_2(tmp_path):
    """DVC edits params.yaml with ruamel.yaml (YAML 1.2): ``on`` and ``no`` are strings there, as
    here (a YAML 1.1 reader would make the label column ``on`` the boolean True), and ``1e-06``
    is a number."""
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  target: on\n  drop_columns: [no, yes]\ntrain:\n  lr: 1e-06\n")
    params = load_params(path)
    assert params.data.target == "on" and params.data.drop_columns == ["no", "yes"]
    assert params.train.lr == 1e-06


def test_a_key_given_twice_is_refused(tmp_path):
    assert "not valid YAML" in params_error(tmp_path, "train:\n  lr: 0.1\n  lr: 0.2\n")
