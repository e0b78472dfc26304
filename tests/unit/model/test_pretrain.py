"""Language-model pretraining of the bilstm family: perplexity falls on structured text, the
classifier starts from the pretrained weights, only training and unlabelled texts are read,
seeded runs repeat exactly, and a bad unlabelled CSV is one line naming file and column."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fit_settings

from sluice.config import Params, TrainConfig
from sluice.data.unlabelled import normalized_texts, read_unlabelled, unlabelled_texts
from sluice.errors import SluiceError
from sluice.model.factory import new_model
from sluice.model.pretrain import column_ids, pretrain_text
from sluice.model.training import fit
from sluice.pipeline.pretraining import plan_pretraining

SUBJECTS = ["the cat", "a dog", "my bird", "the fox"]
VERBS = ["sat on", "ran to", "looked at", "slept by"]
OBJECTS = ["the mat", "a tree", "the house", "my car"]


def corpus(n: int, seed: int) -> list[str]:
    """Sentences of a small grammar: each word predicts much of what follows it."""
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ." for _ in range(n)]


def bilstm(texts: list[str], seed: int = 0, members: int = 1, layers: int = 1):
    """A fresh small bilstm network for a one-text-column table, and its spec."""
    table = pd.DataFrame({"review": texts, "y": ["a", "b"] * (len(texts) // 2)})
    text = {"embedding": 8, "hidden": 8, "layers": layers, "pretrain_epochs": 1}
    cfg = TrainConfig(model="bilstm", text=text)
    return new_model(cfg, {"review": "text"}, ["a", "b"], table, 50, seed, members)


def ids_of(texts: list[str], spec: dict) -> np.ndarray:
    pre = spec["preprocessor"]
    return column_ids(normalized_texts(pd.Series(texts)), pre["vocab"]["review"], 16)


def text_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("layers", [1, 2])
def test_perplexity_falls_on_structured_text(layers):
    torch.set_num_threads(1)
    texts = corpus(400, seed=0)
    net, spec = bilstm(texts, layers=layers)
    history = pretrain_text(net, [ids_of(texts, spec)], fit_settings(batch_size=32), 6)
    val = [r["pretrain_val_perplexity"] for r in history]
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert val[-1] < 0.6 * val[0]  # it learns the grammar ...
    assert val[-1] < 6.0  # ... close to its true branching (about 2 to 4 words per step)
    assert history[-1]["pretrain_perplexity"] < history[0]["pretrain_perplexity"]


def test_the_classifier_starts_from_the_pretrained_weights():
    torch.set_num_threads(1)
    texts = corpus(200, seed=1)
    net, spec = bilstm(texts, members=2)
    before = text_state(net)
    pretrain_text(net, [ids_of(texts, spec)], fit_settings(batch_size=32), 2)
    after = text_state(net)
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    text_parts = {k for k in after if ".features.0." in k or ".features.1." in k}
    assert changed == text_parts  # embeddings and encoders only; the head is untouched
    first, second = net.members
    for name in ("features.0", "features.1"):  # every member starts from the same weights
        ours, theirs = first.get_submodule(name), second.get_submodule(name)
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(a, b)
    # The training loop trains those very modules: with a learning rate of ~0 they stay put.
    X = np.zeros((64, spec["args"]["text"][0]["length"]), dtype=np.float32)
    X[:, :4] = ids_of(texts[:64], spec)[:, :4]
    y = np.arange(64) % 2
    fit(first, (X, y, X, y), 2, fit_settings(lr=1e-7, epochs=1, schedule="none"))
    embedding = first.get_submodule("features.0.0").weight
    assert torch.allclose(embedding, after["members.0.features.0.0.weight"], atol=1e-5)


def test_seeded_pretraining_repeats_exactly():
    torch.set_num_threads(1)
    texts = corpus(200, seed=2)
    states = []
    for _ in range(2):
        net, spec = bilstm(texts, seed=3)
        pretrain_text(net, [ids_of(texts, spec)], fit_settings(batch_size=32, seed=3), 2)
        states.append(text_state(net))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_only_training_and_unlabelled_texts_are_pretrained_on(tmp_path):
    train = pd.DataFrame({"review": corpus(100, seed=4), "y": ["a", "b"] * 50})
    # Test rows: a phrase no training or unlabelled text has ("dog dog dog dog").
    test_texts = ["a dog dog dog dog ."] * 10
    unlabelled = pd.DataFrame({"review": ["ｔｈｅ  cat   sat on the mat ."] * 7, "other": 1})
    unlabelled.to_csv(tmp_path / "extra.csv", index=False)
    net, spec = bilstm(list(train["review"]))
    params = Params(
        data={"unlabelled_path": str(tmp_path / "extra.csv")},
        train={"model": "bilstm", "text": {"pretrain_epochs": 1}},
    )
    texts = unlabelled_texts(params.data.unlabelled_path, ["review"])  # as clean reads them
    assert list(texts.columns) == ["review"]  # only the text columns travel
    plan = plan_pretraining(params, spec, train, texts, "0" * 32)
    (ids,) = plan.columns
    assert (plan.training_texts, plan.unlabelled_texts) == (100, 7)
    assert len(ids) == 107  # the training split and the unlabelled rows, nothing else
    dog = spec["preprocessor"]["vocab"]["review"].index("dog")
    runs = (ids[:, :-3] == dog) & (ids[:, 1:-2] == dog) & (ids[:, 2:-1] == dog)
    assert not runs.any()
    assert ids_of(test_texts, spec)[0, 1:4].tolist() == [dog] * 3  # the test phrase is known
    # The unlabelled texts are normalised as clean does (NFKC, single spaces).
    assert (ids[100:] == ids_of(["the cat sat on the mat ."], spec)[0, : ids.shape[1]]).all()
    assert plan.unlabelled_md5 and len(plan.unlabelled_md5) == 32


def test_other_families_ignore_pretraining_with_a_note(caplog):
    train = pd.DataFrame({"review": corpus(40, seed=5), "y": ["a", "b"] * 20})
    cfg = TrainConfig(model="ngram", text={"buckets": 64, "pretrain_epochs": 2})
    _, spec = new_model(cfg, {"review": "text"}, ["a", "b"], train, 50, 0)
    params = Params(train=cfg.model_dump())
    with caplog.at_level(logging.INFO):
        assert plan_pretraining(params, spec, train, pd.DataFrame(), None) is None
    assert "pretraining is for train.model bilstm (this model: ngram" in caplog.text


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (b"review\ncaf\xe9 au lait\n", "not UTF-8 text"),
        (b"text,other\nhello there,1\n", "no column 'review'"),
        (b'review\n"an open quote\n', "cannot be read as CSV"),
    ],
)
def test_a_bad_unlabelled_csv_is_one_line_naming_the_file(tmp_path, content, expected):
    path = str(tmp_path / "extra.csv")
    if content is not None:
        write_bytes(tmp_path / "extra.csv", content)
    with pytest.raises(SluiceError) as info:
        read_unlabelled(path, ["review"])
    message = str(info.value)
    assert message.startswith(f"data.unlabelled_path {path}: {expected}")
    assert "\n" not in message


def test_an_unlabelled_csv_over_the_memory_budget_is_refused_before_it_is_read(tmp_path):
    path = write_bytes(
        tmp_path / "extra.csv", b"review,other\n" + b"a fine text of words,1\n" * 2000
    )
    with pytest.raises(SluiceError) as info:
        unlabelled_texts(path, ["review"], max_memory_gb=1e-5)
    message = str(info.value)
    assert message.startswith(f"{path} is ") and "more than the budget of 10.0 kB" in message
    assert "\n" not in message
    texts = unlabelled_texts(path, ["review"], max_memory_gb=1.0)
    assert list(texts.columns) == ["review"] and len(texts) == 2000  # only the text column


@pytest.mark.parametrize("value", [-1, 1.5, "two"])
def test_pretrain_epochs_is_a_count(value):
    with pytest.raises(ValueError, match="pretrain_epochs"):
        TrainConfig(text={"pretrain_epochs": value})


def test_unlabelled_texts_without_a_path_or_a_text_column(tmp_path, caplog):
    none = unlabelled_texts(None, ["review"])
    assert list(none.columns) == ["review"] and len(none) == 0  # what clean writes by default
    path = write_bytes(tmp_path / "extra.csv", b"review\nhello there\n")
    with caplog.at_level(logging.INFO):
        assert unlabelled_texts(path, []).empty  # a table without text: nothing to pretrain
    assert f"data.unlabelled_path {path} is ignored: the table has no text column" in caplog.text
