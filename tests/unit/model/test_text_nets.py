"""The text families: padding changes no prediction, text and numbers are both used, the
module names fine-tuning relies on, bit-identical training, and bundles that refuse an edited
vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sluice.config import TrainConfig
from sluice.data.text import PAD
from sluice.errors import SluiceError
from sluice.model.bundle import load_bundle, save_bundle
from sluice.model.factory import new_model
from sluice.model.nets import choose_arch, freeze
from sluice.model.preprocess import Preprocessor
from sluice.model.training import FitSettings, fit, predict_proba

FAMILIES = ["ngram", "bilstm"]
WORDS = {"1": ["superb", "lovely", "tasty"], "0": ["stale", "awful", "bland"]}
FILLER = ["the", "tea", "was", "quite", "and", "box", "came", "fast", "price", "ok"]


def make_table(n: int, seed: int) -> pd.DataFrame:
    """A label that needs both parts: the review's sentiment word plus ``amount`` decide it."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.5
    amount = rng.normal(size=n)
    reviews = []
    for pos in positive:
        words = list(rng.choice(FILLER, size=rng.integers(3, 12)))
        words.insert(int(rng.integers(0, len(words))), rng.choice(WORDS["1" if pos else "0"]))
        reviews.append(" ".join(words))
    label = np.where(np.where(positive, 1.0, -1.0) + 1.5 * amount > 0, "1", "0")
    return pd.DataFrame({"review": reviews, "amount": amount, "y": label})


TYPES = {"review": "text", "amount": "numeric"}


def settings(seed: int = 0, epochs: int = 12) -> FitSettings:
    return FitSettings(
        optimizer="adamw", lr=0.01, weight_decay=0.0, schedule="onecycle", epochs=epochs,
        batch_size=32, patience=epochs, monitor="loss", sampler="natural", augment_shift=0,
        seed=seed,
    )  # fmt: skip


def train(model: str, types: dict[str, str], table: pd.DataFrame, seed: int = 0):
    """Train on the first 600 rows, validate on the next 200; the net and its preprocessor."""
    torch.set_num_threads(1)
    cfg = TrainConfig(model=model, dropout=0.1, text={"embedding": 16, "hidden": 16})
    train_rows, val_rows = table.iloc[:600], table.iloc[600:800]
    net, spec = new_model(cfg, types, ["0", "1"], train_rows, 50, seed)
    pre = Preprocessor.from_dict(spec["preprocessor"])
    data = (
        pre.transform(train_rows), (train_rows["y"] == "1").to_numpy().astype(np.int64),
        pre.transform(val_rows), (val_rows["y"] == "1").to_numpy().astype(np.int64),
    )  # fmt: skip
    result = fit(net, data, 2, settings(seed))
    net.load_state_dict(result.state_dict)
    return net, spec, pre


def accuracy(net, pre, rows: pd.DataFrame) -> float:
    prob = predict_proba(net, torch.from_numpy(pre.transform(rows)))
    return float((prob.argmax(1).numpy() == (rows["y"] == "1").to_numpy()).mean())


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table(1000, seed=0)


@pytest.mark.parametrize("model", FAMILIES)
def test_padding_changes_no_prediction(model, table):
    torch.manual_seed(0)
    net, spec = new_model(TrainConfig(model=model), TYPES, ["0", "1"], table, 50, 0)
    net.eval()
    pre = Preprocessor.from_dict(spec["preprocessor"])
    X = torch.from_numpy(pre.transform(table.iloc[:64]))
    start, length = spec["args"]["text"][0]["start"], spec["args"]["text"][0]["length"]
    longer = torch.cat([X, torch.full((len(X), 40), float(PAD))], dim=1)
    args = {**spec["args"], "text": [{**spec["args"]["text"][0], "length": length + 40}]}
    wide = type(net)(**args)
    wide.load_state_dict(net.state_dict())
    wide.eval()
    assert (X[:, start + length - 1] == PAD).any(), "some rows must already be padded"
    with torch.no_grad():
        torch.testing.assert_close(wide(longer), net(X), rtol=0, atol=1e-6)
        # and within one batch: a row's logits do not depend on how long the others are
        torch.testing.assert_close(net(X[:1]), net(X)[:1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("model", FAMILIES)
def test_text_and_numbers_beat_either_part_alone(model, table):
    test_rows = table.iloc[800:]
    both = accuracy(*train(model, TYPES, table)[::2], test_rows)
    text_only = accuracy(*train(model, {"review": "text"}, table)[::2], test_rows)
    # without text: the same net on a constant text column, which carries nothing
    blank = table.assign(review="")
    numbers_only = accuracy(*train(model, TYPES, blank)[::2], blank.iloc[800:])
    assert both > 0.93, both
    assert both > max(text_only, numbers_only) + 0.1, (both, text_only, numbers_only)


@pytest.mark.parametrize("model", FAMILIES)
def test_two_runs_give_bit_identical_weights(model, table):
    a, _, _ = train(model, TYPES, table.iloc[:800], seed=3)
    b, _, _ = train(model, TYPES, table.iloc[:800], seed=3)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("model", FAMILIES)
def test_finetune_module_names(model, table):
    net, _ = new_model(TrainConfig(model=model), TYPES, ["0", "1"], table, 50, 0)
    freeze(net, ["features.0", "features.1"])
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("features.0.", "features.1.")) for n in frozen)
    assert net.head.weight.requires_grad and net.get_submodule("features.2")


def test_auto_picks_a_text_family_and_tabular_families_refuse_text():
    assert choose_arch("auto", 2, False, ["review"]) == "ngram"
    with pytest.raises(SluiceError, match="train.model mlp cannot read text column 'review'"):
        choose_arch("mlp", 2, False, ["review"])
    with pytest.raises(SluiceError, match="train.model bilstm reads text columns, but the"):
        choose_arch("bilstm", 3, True, [])


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["preprocessor"]["vocab"]["review"].reverse(),
        lambda s: s["classes"].reverse(),
    ],
    ids=["vocabulary", "classes"],
)
def test_a_bundle_with_an_edited_spec_is_refused(tmp_path, table, edit):
    net, spec = new_model(TrainConfig(model="ngram"), TYPES, ["0", "1"], table, 50, 0)
    save_bundle(tmp_path / "m", net, spec)
    clf = load_bundle(tmp_path / "m")
    assert clf.predict_proba(table.iloc[:3]).shape == (3, 2)
    path = tmp_path / "m" / "model.json"
    stored = json.loads(path.read_text())
    edit(stored)
    path.write_text(json.dumps(stored))
    with pytest.raises(SluiceError, match="does not match its SHA-256"):
        load_bundle(tmp_path / "m")


def test_raw_text_in_serving_unseen_empty_and_long(tmp_path, table):
    net, spec = new_model(TrainConfig(model="bilstm"), TYPES, ["0", "1"], table, 50, 0)
    save_bundle(tmp_path / "m", net, spec)
    clf = load_bundle(tmp_path / "m")
    rows = pd.DataFrame(
        {
            "review": ["qwertyuiop zxcvb", "", None, "tea " * 5000, "好喝的茶"],
            "amount": [0.1, None, 2.0, -1.0, 0.0],
        }
    )
    prob = clf.predict_proba(rows)
    assert prob.shape == (5, 2) and np.isfinite(prob).all()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-9)


def idf_of(net) -> torch.Tensor:
    return net.features.get_submodule("1")[0].idf


def test_ngram_idf_matches_scikit_learn_and_travels_with_the_weights():
    """Each word's IDF is TfidfVectorizer's (smooth, min_df=2) on the same training texts: a word
    in one text weighs 0, a word repeated in a text counts once, padding is never counted."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from sluice.model.text import MIN_DF, NgramNet

    rng = np.random.default_rng(0)
    texts = [list(rng.integers(2, 40, size=rng.integers(1, 9))) for _ in range(300)]
    length = max(map(len, texts))
    ids = torch.tensor([t + [PAD] * (length - len(t)) for t in texts])
    layout = [{"vocab": 40, "start": 0, "length": length}]
    args = {"n_tabular": 0, "text": layout, "n_classes": 2, "embedding": 4, "buckets": 64}
    net = NgramNet(**args, dropout=0.0).fit_idf(ids)
    idf = idf_of(net)[:40]
    reference = TfidfVectorizer(analyzer=lambda words: words, min_df=MIN_DF).fit(texts)
    expected = torch.zeros(40, dtype=torch.float64)
    for word, column in reference.vocabulary_.items():
        expected[word] = reference.idf_[column]
    assert torch.allclose(idf.double(), expected, atol=1e-6)
    assert idf[PAD] == 0 and (expected == 0).any()  # some words are in one text only
    copy = NgramNet(**args, dropout=0.0)
    copy.load_state_dict(net.state_dict())  # the IDF is saved with the weights
    assert torch.equal(idf_of(copy), idf_of(net))
