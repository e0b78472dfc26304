"""The training loop's throughput against a bare PyTorch loop, and mixed precision on this CPU.

Same model (sluice's MLP), data (``--rows`` x ``--cols`` float32 in memory), batch size and
optimizer; samples/s over ``--epochs`` epochs, median of ``--repeats``. The bare loop is the
textbook one (permute, slice, forward, loss, backward, step); sluice's ``fit`` also keeps the
best weights and scores a small validation split each epoch, as it does in the pipeline.

    .venv/bin/python benchmarks/training_loop.py [--precisions fp32,bf16,fp16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch import nn

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
    loss_fn = nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    started = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(yt))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(net(Xt[idx]), yt[idx])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    args = parser.parse_args()
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
        print(
            f"{precision}: bare {med['bare']:,.0f} samples/s, sluice {med['sluice']:,.0f} "
            f"samples/s, ratio {med['sluice'] / med['bare']:.3f}",
            flush=True,
        )
    print(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
