"""Data-parallel training: sharding, the 2-process loop under torch's elastic launcher (on
127.0.0.1, gloo), and the checks and settings that decide how a stage is launched."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
import psutil
import pytest
import torch
from conftest import fit_settings, params_error

from sluice.config import TrainConfig, load_params
from sluice.errors import SluiceError
from sluice.model import distributed as dp
from sluice.model.nets import MLP
from sluice.model.tabular import Linear
from sluice.model.training import fit
from sluice.pipeline import launch


def blobs(n=256, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 4)) + np.eye(3, 4)[y] * 2).astype(np.float32)
    return X, y.astype(np.int64)


def train(arch: str, checkpoint=None) -> tuple[dict, list]:
    """One fit (in whatever world this process is in): final parameters and history."""
    torch.set_num_threads(1)
    X, y = blobs()
    torch.manual_seed(0)
    net = Linear(4, 3) if arch == "linear" else MLP(4, 3, [16], 0.2)
    settings = fit_settings(epochs=6, patience=6, batch_size=32, checkpoint_every=2)
    result = fit(net, (X, y, X[:64], y[:64]), 3, settings, checkpoint_path=checkpoint)
    return {k: v.detach().clone() for k, v in net.named_parameters()}, result.history


def train_text() -> tuple[dict, list]:
    """A bilstm as the train stage's ranks make it: each rank pretrains its language model
    alike (seeded, untracked but on rank 0), then the classifier trains data-parallel."""
    import pandas as pd

    from sluice.config import Params
    from sluice.model.factory import new_model
    from sluice.model.preprocess import Preprocessor, encode_labels
    from sluice.pipeline.pretraining import plan_pretraining

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    words = {"a": ["good", "great", "fresh", "tasty"], "b": ["bad", "stale", "awful", "bland"]}
    labels = rng.choice(["a", "b"], 128)
    texts = [" ".join([*rng.choice(words[y], 3), "the", "tea", "was"]) for y in labels]
    table = pd.DataFrame({"review": texts, "y": labels})
    text = {"embedding": 8, "hidden": 8, "min_count": 1, "pretrain_epochs": 1}
    params = Params(train={"model": "bilstm", "text": text})
    net, spec = new_model(params.train, {"review": "text"}, ["a", "b"], table, 50, 0)
    settings = fit_settings(epochs=4, patience=4, batch_size=32)
    plan_pretraining(params, spec, table, pd.DataFrame(), None).fit(net, settings)
    X = Preprocessor.from_dict(spec["preprocessor"]).transform(table, "training split")
    y = encode_labels(table["y"], ["a", "b"], "training split")
    result = fit(net, (X, y, X[:32], y[:32]), 2, settings)
    return {k: v.detach().clone() for k, v in net.named_parameters()}, result.history


def both_models(checkpoint_dir: str) -> dict:
    """What each rank of the 2-process job returns (run by the elastic launcher)."""
    from pathlib import Path

    checkpoint = Path(checkpoint_dir) / "mlp.pt"
    world = dp.current_world()
    linear = train("linear")
    mlp = train("mlp", checkpoint)
    bilstm = train_text()
    saved = torch.load(checkpoint, weights_only=True) if world.is_main else None
    return {
        "world": world,
        "linear": linear,
        "mlp": mlp,
        "bilstm": bilstm,
        "rank_rng": len(saved["rank_rng"]) if saved else None,
        "listening": listening_addresses(),
    }


def listening_addresses() -> set[str]:
    """Addresses this process and its parent listen on (TCP)."""
    me = psutil.Process()
    conns = me.net_connections("tcp") + me.parent().net_connections("tcp")
    return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """``both_models`` in 2 processes under torch's elastic launcher, as the stages run."""
    from torch.distributed.launcher.api import elastic_launch

    launch.register_loopback_rendezvous()
    config = launch.launch_config(TrainConfig(max_restarts=0), 2, "train")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # The launcher installs its own handlers for these signals in this process; put ours back.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    saved = {sig: signal.getsignal(sig) for sig in signals}
    try:
        out = elastic_launch(config, both_models)(str(tmp_path_factory.mktemp("ckpt")))
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return out[0], out[1]


def test_both_ranks_end_with_the_same_weights_and_history(two_ranks):
    r0, r1 = two_ranks
    assert (r0["world"].rank, r1["world"].rank, r0["world"].size) == (0, 1, 2)
    for arch in ("linear", "mlp"):
        for key, value in r0[arch][0].items():
            assert torch.equal(value, r1[arch][0][key]), (arch, key)
        assert r0[arch][1] == r1[arch][1]  # rank 0's validation scores, the same stop
    assert len(r0["mlp"][1]) == 6


def test_a_text_network_pretrains_and_trains_alike_on_both_ranks(two_ranks):
    """`train.nproc: 2` on a text table: the same pretrained start on every rank, then
    data-parallel training that leaves both ranks with the same weights."""
    (w0, history0), (w1, history1) = two_ranks[0]["bilstm"], two_ranks[1]["bilstm"]
    assert w0.keys() == w1.keys() and any("lstm" in k or "rnn" in k for k in w0)
    for key, value in w0.items():
        assert torch.equal(value, w1[key]), key
    assert history0 == history1 and len(history0) == 4
    assert history0[-1]["train_loss"] < history0[0]["train_loss"]


def test_two_processes_train_like_one_with_the_same_global_batch(two_ranks):
    # No batch norm, no dropout: each rank's half batch averaged by DDP is the full batch.
    alone, history = train("linear")
    for key, value in two_ranks[0]["linear"][0].items():
        torch.testing.assert_close(value, alone[key], rtol=1e-4, atol=1e-5)
    losses = [r["train_loss"] for r in two_ranks[0]["linear"][1]]
    assert losses == pytest.approx([r["train_loss"] for r in history], rel=1e-4)


def test_rank_zero_checkpoints_every_rank_random_state(two_ranks):
    assert two_ranks[0]["rank_rng"] == 2


def test_every_socket_of_the_job_listens_on_loopback_only(two_ranks):
    for rank in two_ranks:
        assert rank["listening"] and rank["listening"] <= {"127.0.0.1"}, rank["listening"]


@pytest.mark.parametrize(("n", "size"), [(10, 2), (11, 2), (7, 3), (2, 4)])
def test_shards_cover_every_row_in_equal_parts(n, size):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    shards = [dp.shard(order, dp.World(rank, rank, size)) for rank in range(size)]
    assert len({len(s) for s in shards}) == 1  # the same number of steps on every rank
    assert set(torch.cat(shards).tolist()) == set(order.tolist())
    assert len(shards[0]) * size - n < size  # padding: less than one row per rank
    assert dp.shard(order, dp.ALONE) is order


def test_the_world_comes_from_torchrun_environment(monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert dp.current_world() == dp.ALONE and not dp.under_torchrun()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert dp.current_world() == dp.World(3, 1, 4) and dp.under_torchrun()
    assert dp.rank_batch_size(64, dp.World(3, 1, 4)) == 16
    assert dp.rank_batch_size(65, dp.World(3, 1, 4)) == 17


def test_launch_settings_for_one_host_and_for_several_nodes():
    here = launch.launch_config(TrainConfig(nproc=2, max_restarts=3), 2, "train")
    assert (here.nproc_per_node, here.max_restarts, here.min_nodes) == (2, 3, 1)
    assert here.rdzv_backend == launch.LOOPBACK_RDZV
    assert (here.rdzv_endpoint, here.local_addr) == ("127.0.0.1:0", "127.0.0.1")
    nodes = TrainConfig(nproc=4, nnodes=2, rdzv_endpoint="node0:29400")
    there = launch.launch_config(nodes, 4, "finetune")
    assert (there.rdzv_backend, there.rdzv_endpoint) == ("c10d", "node0:29400")
    assert (there.min_nodes, there.max_nodes, there.run_id) == (2, 2, "sluice-finetune")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  nnodes: 2\n", "'train.nnodes'; several nodes need train.rdzv_endpoint"),
        ("train:\n  rdzv_endpoint: node0\n", "'train.rdzv_endpoint'; write host:port"),
        ("train:\n  nproc: 2\n  folds: 3\n", "'train.nproc'; ensembles"),
        ("train:\n  nproc: 0\n", "'train.nproc'; use a value between"),
        ("finetune:\n  nproc: -1\n", "'finetune.nproc'; use a value between 0"),
    ],
)
def test_bad_launch_params_are_one_line_errors(tmp_path, text, message):
    assert re.search(message, params_error(tmp_path, text))


def test_finetune_takes_train_nproc_unless_it_sets_its_own(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  nproc: 3\n")
    assert launch.processes(load_params(path), "finetune") == 3
    path.write_text("train:\n  nproc: 3\nfinetune:\n  nproc: 1\n")
    assert launch.processes(load_params(path), "finetune") == 1
    assert launch.processes(load_params(path), "train") == 3


def test_what_cannot_fine_tune_in_several_processes_is_refused_before_starting(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("finetune:\n  init_from: models:/sluice-classifier@champion\n")
    with pytest.raises(SluiceError, match="registry model .* set finetune.nproc: 1"):
        launch._check_data_parallel(load_params(path), "finetune", 2)
    bundle = tmp_path / "ens"
    bundle.mkdir()
    (bundle / "model.json").write_text('{"ensemble": {"members": 5}}')
    path.write_text(f"finetune:\n  init_from: {bundle}\n")
    with pytest.raises(SluiceError, match="is an ensemble, .* set finetune.nproc: 1"):
        launch._check_data_parallel(load_params(path), "finetune", 2)
    launch._check_data_parallel(load_params(path), "train", 2)  # train starts from scratch


def test_more_processes_than_gpus_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  device: cuda\n")
    gpus = torch.cuda.device_count()
    with pytest.raises(SluiceError, match=f"train would run {gpus + 1} processes on {gpus} CUDA"):
        launch._check_data_parallel(load_params(path), "train", gpus + 1)


def test_a_stage_launched_elsewhere_skips_its_main():
    code = (
        "from sluice.stage import run_stage\n"
        "run_stage(lambda: print('main'), launch=lambda: True)\n"
        "run_stage(lambda: print('here'), launch=lambda: False)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["here"]


def test_a_process_started_by_torchrun_is_not_launched_again(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: reading it would fail
    monkeypatch.setenv("RANK", "0")
    assert launch.relaunch("train")() is False
