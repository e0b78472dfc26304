"""The training loop's throughput against a bare PyTorch loop, and mixed precision on this CPU.

Same model (sluice's MLP), data (``--rows`` x ``--cols`` float32 in memory), batch size and
optimizer; samples/s over ``--epochs`` epochs, median of ``--repeats``. The bare loop is the
textbook one (permute, slice, forward, loss, backward, step); sluice's ``fit`` also keeps the
best weights and scores a small validation split each epoch, as it does in the pipeline.

    .venv/bin/python benchmarks/training_loop.py [--precisions fp32,bf16,fp16]

``--nproc N`` (N > 1) runs the same comparison data-parallel: the script re-runs itself in N
processes under torch's elastic launcher (the way the train stage does, on 127.0.0.1, gloo);
the bare loop is then the textbook DistributedDataParallel loop (each process permutes with
the same seed and slices its every N-th row, ``batch / N`` rows per process and step).
Samples/s count the rows of all processes together.

    .venv/bin/python benchmarks/training_loop.py --nproc 2 --threads 1 --precisions fp32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from sluice.model import distributed as dp
from sluice.model.nets import MLP
from sluice.model.training import FitSettings, fit


def data(rows: int, cols: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows).astype(np.int64)
    X = (rng.normal(size=(rows, cols)) + y[:, None] * 0.3).astype(np.float32)
    return X, y


def bare_loop(X, y, batch: int, epochs: int, precision: str) -> float:
    torch.manual_seed(0)
    net = MLP(X.shape[1], 2, [256, 128], 0.3)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    rank, size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    model = net
    if size > 1:  # the textbook DDP loop: one process group, the network wrapped
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        model = DistributedDataParallel(net)
        batch = -(-batch // size)
    loss_fn = nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(0)  # the same permutation on every process
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(yt), generator=gen)[rank::size]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return len(y) * epochs / (time.perf_counter() - started)


def sluice_loop(X, y, batch: int, epochs: int, precision: str) -> float:
    torch.manual_seed(0)
    net = MLP(X.shape[1], 2, [256, 128], 0.3)
    settings = FitSettings(
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.0,
        schedule="none",
        epochs=epochs,
        batch_size=batch,
        patience=epochs,
        monitor="loss",
        sampler="natural",
        augment_shift=0,
        seed=0,
        device="cpu",
        precision=precision,
    )
    val = (X[:2048], y[:2048])
    started = time.perf_counter()
    fit(net, (X, y, *val), 2, settings)
    return len(y) * epochs / (time.perf_counter() - started)


def relaunch(nproc: int) -> None:
    """This script again, in ``nproc`` processes under the launcher the stages use."""
    from torch.distributed.launcher.api import elastic_launch

    from sluice.config import TrainConfig
    from sluice.pipeline import launch

    launch.register_loopback_rendezvous()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    config = launch.launch_config(TrainConfig(nproc=nproc, max_restarts=0), nproc, "bench")
    elastic_launch(config, sys.executable)("-u", __file__, *sys.argv[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel processes")
    args = parser.parse_args()
    if args.nproc > 1 and not dp.under_torchrun():
        relaunch(args.nproc)
        return
    main_rank = dp.current_world().is_main
    torch.set_num_threads(args.threads)
    X, y = data(args.rows, args.cols)
    results = {}
    for precision in args.precisions.split(","):
        runs = {"bare": [], "sluice": []}
        for _ in range(args.repeats):  # alternate, so both see the same machine
            runs["bare"].append(bare_loop(X, y, args.batch, args.epochs, precision))
            runs["sluice"].append(sluice_loop(X, y, args.batch, args.epochs, precision))
        med = {k: statistics.median(v) for k, v in runs.items()}
        results[precision] = {**med, "ratio": med["sluice"] / med["bare"]}
        if not main_rank:
            continue
        print(
            f"{precision}: bare {med['bare']:,.0f} samples/s, sluice {med['sluice']:,.0f} "
            f"samples/s, ratio {med['sluice'] / med['bare']:.3f}",
            flush=True,
        )
    if main_rank:
        print(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
