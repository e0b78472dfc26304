"""What a tune study searches: the families and samplers that fit the table (text or not), and
one trial's point of the space as a choice of params sections."""

import optuna
import pytest

from sluice.config import Params
from sluice.errors import SluiceError
from sluice.tuned import apply_tuned
from sluice.tuning.space import (
    default_point,
    imbalance_values,
    study_families,
    study_space,
    suggest_choice,
)


def params_with(tune: dict | None = None, **sections) -> Params:
    return Params.model_validate({"tune": tune or {}, **sections})


def fixed(**values) -> optuna.trial.FixedTrial:
    return optuna.trial.FixedTrial(values)


POINT = {"width": 64, "depth": 2, "dropout": 0.1234, "weight_decay": 1.2345e-4, "lr": 0.0031622}
POINT |= {"batch_size": 128, "imbalance": "smote"}
TABLE = {"a": "numeric", "b": "categorical"}


def test_a_point_becomes_a_choice_of_params_sections():
    params = params_with()
    choice = suggest_choice(fixed(model="mlp", **POINT), params.tune.space, ["mlp"], params, "mlp")
    assert choice == {
        "resample": {"method": "smote", "class_weights": False},
        "train": {
            "model": "mlp",
            "hidden": [64, 64],
            "dropout": 0.123,  # 3 significant digits: the trial trains with what the file shows
            "weight_decay": 0.000123,
            "lr": 0.00316,
            "batch_size": 128,
        },
    }


@pytest.mark.parametrize(
    ("family", "absent"),
    [("linear", {"hidden", "dropout"}), ("cnn", {"hidden"}), ("tabm", set())],
)
def test_width_and_depth_only_shape_the_families_that_have_them(family, absent):
    params = params_with()
    space = params.tune.space
    choice = suggest_choice(fixed(model=family, **POINT), space, [family], params, "mlp")
    assert choice["train"]["model"] == family
    assert absent.isdisjoint(choice["train"])
    assert {"lr", "weight_decay", "batch_size"} <= set(choice["train"])


def test_a_null_key_is_not_searched_and_keeps_params_values():
    params = params_with(
        {"space": {"model": None, "width": [16, 32], "depth": None, "imbalance": None}},
        train={"hidden": [8, 8, 8]},
    )
    choice = suggest_choice(
        fixed(**(POINT | {"width": 16})), params.tune.space, None, params, "mlp"
    )
    assert "model" not in choice["train"]
    assert choice["train"]["hidden"] == [16, 16, 16]  # the depth of train.hidden
    assert choice["resample"] == {}


@pytest.mark.parametrize(
    ("strategy", "values"),
    [
        ("none", {"method": "none", "class_weights": False}),
        ("class_weights", {"method": "none", "class_weights": True}),
        ("random_over", {"method": "random_over", "class_weights": False}),
        ("smote", {"method": "smote", "class_weights": False}),
    ],
)
def test_imbalance_strategies_set_the_resample_section(strategy, values):
    assert imbalance_values(strategy) == values
    assert apply_tuned(params_with(), {"resample": values}).resample.method == values["method"]


def test_the_cnn_is_searched_only_for_image_rows():
    space = params_with({"space": {"model": ["mlp", "cnn"]}}).tune.space
    assert study_families(space, image_rows=False) == ["mlp"]
    assert study_families(space, image_rows=True) == ["mlp", "cnn"]
    assert study_families(params_with({"space": {"model": None}}).tune.space, False) is None
    only_cnn = params_with({"space": {"model": ["cnn"]}}).tune.space
    with pytest.raises(SluiceError, match="tune.space.model .* add one of tabm, mlp, linear"):
        study_families(only_cnn, image_rows=False)


REVIEWS = {"stars": "numeric", "review": "text", "shop": "categorical"}


def test_a_table_with_text_searches_only_text_families_and_whole_row_samplers(caplog):
    space = params_with().tune.space  # the default space names no text family
    with caplog.at_level("INFO", logger="sluice.tuning.space"):
        searched, left_out = study_space(space, REVIEWS, image_rows=False)
    assert searched.model == ["ngram"]  # what auto picks; bilstm only when listed
    assert searched.imbalance == ["none", "class_weights", "random_over"]
    assert left_out == {
        "model": ["tabm", "mlp", "linear"],
        "imbalance": ["smote"],
        "reason": "text column 'review'",
    }
    (line,) = [r.getMessage() for r in caplog.records]
    assert "model tabm, mlp, linear; imbalance smote (text column 'review')" in line
    rest = {"model", "imbalance"}
    assert searched.model_dump(exclude=rest) == space.model_dump(exclude=rest)


def test_a_space_naming_text_families_keeps_them_and_may_lose_every_sampler():
    space = params_with(
        {"space": {"model": ["mlp", "bilstm", "cnn"], "imbalance": ["smote", "adasyn"]}}
    ).tune.space
    searched, left_out = study_space(space, REVIEWS, image_rows=False)
    assert searched.model == ["bilstm"]
    assert searched.imbalance is None  # not searched: resample as params.yaml sets it
    assert left_out["model"] == ["mlp", "cnn"] and left_out["imbalance"] == ["smote", "adasyn"]
    unsearched = params_with({"space": {"model": None}}).tune.space
    assert study_space(unsearched, REVIEWS, image_rows=False)[0].model is None


def test_a_table_without_text_searches_the_space_as_before(caplog):
    space = params_with().tune.space
    with caplog.at_level("INFO", logger="sluice.tuning.space"):
        assert study_space(space, TABLE, image_rows=False) == (space, {})
    assert not caplog.records
    mixed = params_with({"space": {"model": ["mlp", "ngram"]}}).tune.space
    searched, left_out = study_space(mixed, TABLE, image_rows=False)
    assert searched.model == ["mlp"]
    assert left_out == {"model": ["ngram"], "reason": "no text column"}


def test_a_space_of_only_text_families_is_refused_on_a_table_without_text():
    space = params_with({"space": {"model": ["ngram", "bilstm"]}}).tune.space
    with pytest.raises(SluiceError, match=r"^tune.space.model \['ngram', 'bilstm'\] holds only"):
        study_space(space, TABLE, image_rows=False)
    with pytest.raises(SluiceError) as err:
        study_families(space, image_rows=True)
    assert "\n" not in str(err.value) and "add one of tabm, mlp, linear" in str(err.value)


TEXT_POINT = {"max_len": 100, "embedding": 48, "text_hidden": 40, "text_layers": 2}
TEXT_POINT |= {"cell": "gru", "buckets": 4096, "pretrain_epochs": 1}
TEXT_SPACE = {"model": ["ngram", "bilstm"], "buckets": [1024, 4096], "text_layers": [1, 2]}
TEXT_SPACE |= {"pretrain_epochs": [0, 1]}


@pytest.mark.parametrize(
    ("family", "text"),
    [
        (
            "bilstm",
            {"max_len": 100, "embedding": 48, "hidden": 40, "layers": 2, "cell": "gru"}
            | {"pretrain_epochs": 1},
        ),
        ("ngram", {"max_len": 100, "embedding": 48, "buckets": 4096}),
    ],
)
def test_a_text_trial_sets_the_train_text_keys_of_its_family(family, text):
    params = params_with(
        {"space": TEXT_SPACE},
        train={"text": {"min_count": 1}},
    )
    space, _ = study_space(params.tune.space, REVIEWS, image_rows=False)
    point = POINT | TEXT_POINT | {"model": family, "imbalance": "random_over"}
    choice = suggest_choice(fixed(**point), space, space.model, params, "ngram")
    assert choice["train"]["text"] == text
    assert "hidden" not in choice["train"]  # width and depth shape tabular families only
    assert choice["resample"]["method"] == "random_over"
    tuned = apply_tuned(params, choice).train.text
    assert tuned.embedding == 48 and tuned.max_len == 100
    assert tuned.min_count == 1  # a key the choice does not name keeps params.yaml's value
    tabular = suggest_choice(
        fixed(**(point | {"model": "mlp"})), params.tune.space, ["mlp"], params, "mlp"
    )
    assert "text" not in tabular["train"]


def _reviews(rows: int = 96):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    good, bad = ["good", "great", "tasty", "fresh"], ["bad", "stale", "awful", "bland"]
    label = np.where(rng.random(rows) < 0.4, "other", "great")
    words = [rng.choice(bad if y == "other" else good, 6) for y in label]
    texts = [" ".join([*w, "the", "tea", "was"][: rng.integers(4, 9)]) for w in words]
    return pd.DataFrame({"review": texts, "stars": rng.normal(size=rows), "score": label})


def test_a_text_trial_trains_the_network_its_choice_describes():
    from sluice.model.factory import new_model
    from sluice.tuning.data import TuneData
    from sluice.tuning.trial import Objective

    params = params_with(
        {"space": TEXT_SPACE},
        train={"epochs": 3, "patience": 3, "text": {"min_count": 1}},
    )
    types = {"review": "text", "stars": "numeric"}
    space, left_out = study_space(params.tune.space, types, image_rows=False)
    frame = _reviews()
    data = TuneData(frame.iloc[:64], frame.iloc[64:], "score", types, ["great", "other"])
    objective = Objective(params, data, space, "ngram", left_out)
    assert objective.families == ["ngram", "bilstm"]  # what the defaults are scored for
    point = fixed(**(POINT | TEXT_POINT | {"model": "bilstm", "imbalance": "random_over"}))
    choice = suggest_choice(point, space, objective.families, params, "ngram")
    tuned = apply_tuned(params, choice)
    net, spec = new_model(tuned.train, types, data.classes, data.train, 50, 0)
    args = spec["args"]
    assert (spec["arch"], args["hidden"], args["layers"], args["cell"]) == ("bilstm", 40, 2, "gru")
    assert net.features.get_submodule("0")[0].embedding_dim == 48
    scores, best_epoch, _ = objective._train(point, tuned, curve := [])
    assert len(curve) == 3 and 1 <= best_epoch <= 3
    assert 0.0 < scores["log_loss"] < 1.0  # the words tell the labels apart
    # The trial pretrained its language model first (as train does): without, other scores.
    unpretrained = fixed(**(dict(point.params) | {"pretrain_epochs": 0}))
    plain = apply_tuned(params, suggest_choice(unpretrained, space, ["bilstm"], params, "ngram"))
    assert plain.train.text.pretrain_epochs == 0 and tuned.train.text.pretrain_epochs == 1
    assert objective._train(unpretrained, plain, [])[0] != scores


def test_a_nested_choice_is_flattened_into_dotted_keys():
    from sluice.config import flatten

    choice = {"resample": {}, "train": {"lr": 0.01, "text": {"cell": "gru", "embedding": 48}}}
    assert flatten(choice) == {
        "train.lr": 0.01,
        "train.text.cell": "gru",
        "train.text.embedding": 48,
    }


def test_the_text_families_are_the_model_layers():
    from sluice.config.tune import TEXT_FAMILIES
    from sluice.model.nets import TEXT_ARCHS

    assert TEXT_FAMILIES == TEXT_ARCHS


def test_the_first_point_of_a_study_is_params_own_values_where_the_space_holds_them():
    params = params_with(
        {"space": {"width": [8, 64], "batch_size": [32, 128]}},
        train={"model": "mlp", "hidden": [48, 16], "lr": 0.5, "batch_size": 64},
        resample={"method": "none", "class_weights": True},
    )
    space = params.tune.space
    point = default_point(space, ["tabm", "mlp"], params, "tabm")
    # lr 0.5 is above the range and batch size 64 not a choice: the sampler draws them.
    assert point == {
        "model": "mlp",
        "dropout": 0.3,
        "weight_decay": 0.0005,
        "width": 48,
        "depth": 2,
        "imbalance": "class_weights",
    }
    choice = suggest_choice(fixed(**point, lr=0.001, batch_size=32), space, ["mlp"], params, "x")
    assert choice["train"]["hidden"] == [48, 48] and choice["resample"]["class_weights"]
    # train.model auto (or a family the study leaves out) starts from the study's default.
    auto = params_with(train={"model": "auto"}, resample={"method": "random_over"})
    first = default_point(auto.tune.space, ["tabm", "mlp"], auto, "tabm")
    assert first["model"] == "tabm" and first["imbalance"] == "random_over"


def test_a_text_study_starts_from_params_text_values_and_never_from_a_refused_sampler():
    params = params_with(
        {"space": {"model": ["ngram"], "buckets": [65536, 262144]}},
        resample={"method": "smote"},
    )
    space, _ = study_space(params.tune.space, {"t": "text"}, False)
    point = default_point(space, ["ngram"], params, "ngram")
    assert point["model"] == "ngram" and point["buckets"] == 262144
    assert {"max_len", "embedding"} <= set(point) and "imbalance" not in point
