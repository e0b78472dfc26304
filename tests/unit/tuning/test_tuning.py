"""The tune stage's parts without MLflow or training: the space's validation, the choice and how
stages apply it, the seeded study, the study in a storage (what a study searches:
test_space.py)."""

from pathlib import Path

import optuna
import pytest
import yaml

from sluice.config import Params, TuneSpace, load_params
from sluice.errors import SluiceError
from sluice.tuned import apply_tuned, load_tuned_params
from sluice.tuning.choice import (
    TUNE_REPORT,
    builds_cnn,
    skip_reason,
    study_name,
    write_choice,
)
from sluice.tuning.run import train_on_folds
from sluice.tuning.selection import paired_margin, study_result
from sluice.tuning.space import suggest_choice
from sluice.tuning.study import new_study, optimize

ROOT = Path(__file__).resolve().parents[3]


def params_with(tune: dict | None = None, **sections) -> Params:
    return Params.model_validate({"tune": tune or {}, **sections})


def test_every_tune_key_is_documented_in_params_yaml():
    whole = (ROOT / "params.yaml").read_text()
    params = load_params(ROOT / "params.yaml")
    text = whole[whole.index("\ntune:") : whole.index("\nresample:")]  # the tune section
    for key in type(params.tune).model_fields:
        assert f"\n  {key}:" in text, f"tune.{key} is not in params.yaml"
    for key in TuneSpace.model_fields:
        assert f"\n    {key}:" in text, f"tune.space.{key} is not in params.yaml"


PIXELS = {f"p{i}": "numeric" for i in range(64)}
TABLE = {"a": "numeric", "b": "categorical"}


def test_skipped_with_no_budget_or_images_without_cnn_in_the_space():
    assert skip_reason(params_with({"trials": 0}), TABLE) == "tune.trials is 0"
    assert skip_reason(params_with({"trials": 5}), TABLE) is None
    assert "CNN" in skip_reason(params_with({"trials": 5, "space": {"model": ["mlp"]}}), PIXELS)
    assert skip_reason(params_with({"trials": 5, "space": {"model": ["cnn"]}}), PIXELS) is None
    mlp_on_pixels = params_with({"trials": 5, "space": {"model": ["mlp"]}}, train={"model": "mlp"})
    assert skip_reason(mlp_on_pixels, PIXELS) is None


def test_a_study_over_text_is_opt_in():
    """A text table is tuned only when tune.space.model names a text family."""
    reviews = {"review": "text", "stars": "numeric"}
    assert "text column" in skip_reason(params_with({"trials": 5}), reviews)
    assert skip_reason(params_with({"trials": 5, "space": {"model": ["ngram"]}}), reviews) is None
    assert skip_reason(params_with({"trials": 5, "space": {"model": None}}), reviews) is None


@pytest.mark.parametrize("model", ["auto", "mlp", "tabm", "linear", "cnn", "ngram", "bilstm"])
@pytest.mark.parametrize(
    "types",
    [
        PIXELS,
        {f"p{i}": "numeric" for i in range(16)},
        {f"p{i}": "numeric" for i in range(9)},  # 3 x 3: too small for an image
        {**{f"p{i}": "numeric" for i in range(63)}, "c": "categorical"},
        TABLE,
        {**{f"p{i}": "numeric" for i in range(63)}, "review": "text"},  # 64 columns, one text
    ],
)
def test_the_light_cnn_check_agrees_with_the_model_layer(model, types):
    from sluice.model.nets import choose_arch

    all_numeric = all(t == "numeric" for t in types.values())
    text = [c for c, t in types.items() if t == "text"]
    try:
        arch = choose_arch(model, len(types), all_numeric, text)
    except SluiceError:
        # cnn asked for rows that are not images: train refuses it, and the study skips to
        # let it; any other refusal (a family that does not fit the text) is not the CNN
        arch = "cnn" if model == "cnn" and not text else "refused"
    assert builds_cnn(model, types) == (arch == "cnn")


def test_apply_tuned_lays_the_choice_over_params():
    params = params_with(train={"lr": 0.1, "epochs": 7})
    tuned = apply_tuned(params, {"resample": {}, "train": {"lr": 0.01, "hidden": [4]}})
    assert (tuned.train.lr, tuned.train.hidden, tuned.train.epochs) == (0.01, [4], 7)
    assert apply_tuned(params, {}) == params
    assert apply_tuned(params, {"resample": {}, "train": {}}) == params


@pytest.mark.parametrize(
    ("tuned", "message"),
    [
        ({"finetune": {"lr": 0.1}}, "unexpected entry 'finetune'"),
        ({"train": [1]}, "unexpected entry 'train'"),
        ({"train": {"lr": -1.0}}, "bad value -1.0 for 'train.lr'"),
        ({"train": {"lrr": 1.0}}, "unknown key 'train.lrr'"),
    ],
)
def test_a_bad_choice_is_refused_naming_the_file(tuned, message):
    with pytest.raises(SluiceError, match=message) as err:
        apply_tuned(params_with(), tuned, "reports/tuned.yaml")
    assert str(err.value).startswith("reports/tuned.yaml: ") and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lr": [0.1]}, "'tune.space.lr'; give [low, high]"),
        ({"width": [64, 8]}, "'tune.space.width'; give [low, high]"),
        ({"weight_decay": [0, 0.1]}, "'tune.space.weight_decay'; give [low, high]"),
        ({"model": []}, "'tune.space.model'; list distinct choices"),
        ({"batch_size": [32, 32]}, "'tune.space.batch_size'; list distinct choices"),
        (
            {"imbalance": ["smoteish"]},
            "bad value 'smoteish' for 'tune.space.imbalance'; use one of none",
        ),
        ({"model": ["resnet"]}, "bad value 'resnet' for 'tune.space.model'; use one of tabm"),
    ],
)
def test_a_bad_space_is_refused_with_the_key(tmp_path, space, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"tune": {"space": space}}))
    with pytest.raises(SluiceError, match=message.replace("[", r"\[")) as err:
        load_params(path)
    assert "\n" not in str(err.value)


def test_the_choice_file_round_trips_through_the_stages_loader(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1\n")
    assert load_tuned_params() == load_params()  # no choice file yet: params.yaml as it is
    choice = {"resample": {}, "train": {"lr": 1.5e-05, "hidden": [32, 32], "model": "mlp"}}
    write_choice(choice, "a note\non two lines", {"trials": 3})
    text = (tmp_path / "reports/tuned.yaml").read_text()
    assert text.startswith("# a note\n# on two lines\nresample: {}\ntrain:\n")
    assert "  hidden: [32, 32]\n" in text
    with caplog.at_level("INFO", logger="sluice.tune"):
        tuned = load_tuned_params()
    assert (tuned.train.lr, tuned.train.hidden, tuned.train.model) == (1.5e-05, [32, 32], "mlp")
    assert "train.lr 0.1 -> 1.5e-05" in caplog.text  # a searched key wins over params.yaml
    # params.yaml set lr away from its default: a warning; hidden and model were defaults
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "replaces what params.yaml sets: train.lr 0.1" in warned[0]
    assert "train.model" not in warned[0] and "tune.space.<key>: null" in warned[0]
    assert (tmp_path / TUNE_REPORT).exists()
    write_choice({}, "skipped", {"trials": 0})
    assert yaml.safe_load((tmp_path / "reports/tuned.yaml").read_text()) == {
        "resample": {},
        "train": {},
    }
    assert load_tuned_params() == load_params()


def test_a_text_choice_sets_only_the_text_keys_it_names(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  text:\n    min_count: 3\n    embedding: 16\n")
    choice = {
        "resample": {},
        "train": {"model": "bilstm", "text": {"embedding": 48, "cell": "gru"}},
    }
    write_choice(choice, "a note", {"trials": 3})
    assert "  text: {cell: gru, embedding: 48}\n" in (tmp_path / "reports/tuned.yaml").read_text()
    with caplog.at_level("INFO", logger="sluice.tune"):
        text = load_tuned_params().train.text
    assert (text.embedding, text.cell, text.min_count) == (48, "gru", 3)
    (warned,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "train.text.embedding 16 -> 48" in warned and "min_count" not in warned
    assert "train.text.cell 'lstm' -> 'gru'" in caplog.text


def test_the_study_name_follows_data_and_space_but_not_budget():
    base = params_with({"trials": 5})
    name = study_name(base, ["a", "b"])
    assert name == study_name(params_with({"trials": 50, "timeout": 9}), ["a", "b"])
    assert name != study_name(base, ["a", "c"])
    assert name != study_name(params_with({"trials": 5, "space": {"lr": [1e-3, 1e-2]}}), ["a", "b"])
    assert name != study_name(params_with({"trials": 5}, seed=1), ["a", "b"])


class PureObjective:
    """A cheap stand-in score over a real point of the space (no training)."""

    metric = "val_loss"

    def __init__(self, params: Params) -> None:
        self.params = params

    def __call__(self, trial) -> float:
        p = self.params
        choice = suggest_choice(trial, p.tune.space, ["mlp", "linear"], p, "mlp")
        trial.set_user_attr("choice", choice)
        train = choice["train"]
        return abs(train["lr"] - 0.003) + train.get("dropout", 0.5) + train["batch_size"] / 1e3


def run_study(params: Params, storage: str | None = None):
    params = params.model_copy(update={"tune": params.tune.model_copy(update={"storage": storage})})
    study = new_study(params, "s")
    optimize(study, PureObjective(params), params)
    return study


def test_the_seeded_study_repeats_itself_and_a_seed_changes_it():
    params = params_with({"trials": 12, "startup_trials": 3})
    first, again = run_study(params), run_study(params)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert len(first.trials) == 12
    other = run_study(params.model_copy(update={"seed": 1}))
    assert [t.params for t in other.trials] != [t.params for t in first.trials]


def test_a_study_in_a_storage_is_continued_up_to_the_budget(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    run_study(params_with({"trials": 3, "startup_trials": 2}), storage)
    study = run_study(params_with({"trials": 5, "startup_trials": 2}), storage)
    assert len(study.trials) == 5  # two more, not five more
    assert len(run_study(params_with({"trials": 5}), storage).trials) == 5


def test_the_best_trial_breaks_ties_on_macro_f1_then_log_loss():
    scores = [
        {"roc_auc": 0.99, "f1_macro": 0.90, "log_loss": 0.10},
        {"roc_auc": 0.99, "f1_macro": 0.95, "log_loss": 0.20},  # the tie goes to the better F1
        {"roc_auc": 0.99, "f1_macro": 0.95, "log_loss": 0.30},
        {"roc_auc": float("nan"), "f1_macro": 1.0, "log_loss": 0.01},  # NaN never wins
        {"roc_auc": 0.98, "f1_macro": 0.99, "log_loss": 0.05},
    ]
    study = optuna.create_study(direction="maximize")
    for i, s in enumerate(scores):
        study.add_trial(
            optuna.trial.create_trial(
                value=s["roc_auc"] if i != 3 else 0.0,
                user_attrs={"scores": s, "choice": {"train": {"lr": i}}},
            )
        )
    choice, report, _ = study_result(study, "roc_auc", "s")
    assert choice == {"train": {"lr": 1}} and report["best_trial"] == 1
    assert report["best_val_f1_macro"] == 0.95 and report["trials"] == 5
    minimise = optuna.create_study()
    for i, s in enumerate(scores):
        minimise.add_trial(
            optuna.trial.create_trial(
                value=s["log_loss"], user_attrs={"scores": s, "choice": {"train": {"lr": i}}}
            )
        )
    assert study_result(minimise, "log_loss", "s")[1]["best_trial"] == 3


def _cv_study(fold_scores: list[list[float]]) -> optuna.Study:
    """A minimising (log loss) study whose trials hold these per-fold scores."""
    study = optuna.create_study()
    for i, folds in enumerate(fold_scores):
        mean = sum(folds) / len(folds)
        scores = {"log_loss": mean, "f1_macro": 0.9}
        attrs = {"scores": scores, "fold_scores": folds, "choice": {"train": {"lr": i}}}
        study.add_trial(optuna.trial.create_trial(value=mean, user_attrs=attrs))
    return study


def _defaults(family: str, folds: list[float]) -> dict:
    scores = {"log_loss": sum(folds) / len(folds), "f1_macro": 0.9}
    choice = {"resample": {}, "train": {"model": family}}
    return {
        "family": family,
        "choice": choice,
        "scores": scores,
        "fold_scores": folds,
        "mlflow_run_id": f"run-{family}",
    }


def test_a_trial_replaces_the_defaults_only_when_it_beats_them_by_a_standard_error():
    mlp, tabm = [0.060, 0.070, 0.050, 0.065], [0.080, 0.090, 0.070, 0.085]
    defaults = [_defaults("tabm", tabm), _defaults("mlp", mlp)]  # mlp is the better default
    # Better on every fold by about 0.01: clearly better, so the trial is chosen.
    clear = _cv_study([[0.10] * 4, [0.051, 0.059, 0.041, 0.054]])
    choice, report, run = study_result(clear, "log_loss", "s", defaults)
    assert choice == {"train": {"lr": 1}} and report["chosen"] == "trial 1"
    assert report["margin_over_defaults"] == pytest.approx(0.0100, abs=1e-4)
    assert report["margin_over_defaults"] > report["margin_se"] > 0
    assert report["defaults"] == {"tabm": pytest.approx(0.08125), "mlp": pytest.approx(0.06125)}
    # Better on average, but by less than the spread of the per-fold differences: defaults.
    noisy = _cv_study([[0.030, 0.090, 0.030, 0.080]])
    choice, report, run = study_result(noisy, "log_loss", "s", defaults)
    assert choice == {"resample": {}, "train": {"model": "mlp"}} and run == "run-mlp"
    assert report["chosen"] == "defaults mlp" and report["best_trial"] == 0
    assert report["chosen_val_log_loss"] == pytest.approx(0.06125)
    assert 0 < report["margin_over_defaults"] <= report["margin_se"]
    # Without defaults (a study on one validation split) the best trial is chosen.
    assert study_result(noisy, "log_loss", "s")[1]["chosen"] == "trial 0"


def test_the_margin_is_the_mean_per_fold_gain_and_its_standard_error():
    margin, se = paired_margin([0.9, 0.8, 0.7], [0.8, 0.8, 0.8], sign=1.0)  # ROC AUC-like
    assert margin == pytest.approx(0.0) and se == pytest.approx(0.1 / 3**0.5)
    assert paired_margin([0.1, 0.2], [0.2, 0.4], sign=-1.0)[0] == pytest.approx(0.15)
    assert all(v != v for v in paired_margin([0.9, float("nan")], [0.8, 0.8], sign=1.0))


def test_a_cross_validated_choice_trains_one_network_per_fold_unless_params_say_otherwise():
    choice = {"resample": {"method": "smote"}, "train": {"lr": 0.01}}
    assert train_on_folds(choice, params_with(), 5) == {
        "resample": {"method": "smote"},
        "train": {"lr": 0.01, "folds": 5},
    }
    assert train_on_folds(choice, params_with(train={"folds": 3}), 5) == choice
    assert train_on_folds(choice, params_with(train={"nproc": 2}), 5) == choice
