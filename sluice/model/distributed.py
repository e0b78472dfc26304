"""Data parallelism for the training loop: which process this is, its shard of each epoch,
and the few collectives the loop needs (torch.distributed; gloo on the CPU, NCCL on CUDA).

A process started by torchrun finds ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in its
environment; any other process is a world of one, for which every helper here is a no-op.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# Test-only switch, "<rank>:<epoch>": that rank exits abruptly as that epoch starts, in the first
# attempt of a torchrun job only (TORCHELASTIC_RESTART_COUNT 0), to exercise restarts.
FAIL_SWITCH = "SLUICE_TEST_FAIL_RANK_AT_EPOCH"


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, checkpoints and writes outputs."""
        return self.rank == 0


ALONE = World()  # a process that is not part of a data-parallel job


def current_world() -> World:
    """The world torchrun described in the environment (a world of one elsewhere)."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return ALONE
    return World(int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]))


def under_torchrun() -> bool:
    """True in a process that torchrun (or another launcher setting RANK) started."""
    return "RANK" in os.environ and "LOCAL_RANK" in os.environ


def rank_device(device: torch.device, world: World) -> torch.device:
    """One GPU per process on a node (``cuda:<local rank>``); CPUs are shared."""
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def join_process_group(world: World, device: torch.device) -> None:
    """Join the default process group, once per process (nothing for a world of one); it is
    left at exit, so that several fits in one process share it."""
    if world.size == 1 or dist.is_initialized():
        return
    store, _, _ = next(dist.rendezvous("env://", world.rank, world.size))
    # torchrun's store outlives a restart: each attempt keys its addresses apart, so that no
    # rank of a restarted attempt reads the address a process of the failed one left there.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.PrefixStore(f"sluice/attempt_{attempt}", store)
    ranks = {"rank": world.rank, "world_size": world.size, "store": store}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, **ranks)
    else:
        dist.init_process_group("gloo", **ranks)
    atexit.register(dist.destroy_process_group)


def wrap(net: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """``net`` under DistributedDataParallel (gradients averaged over the processes at every
    step; buffers such as batch norm's running statistics broadcast from rank 0), or ``net``."""
    if world.size == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)


def shard(order: torch.Tensor, world: World) -> torch.Tensor:
    """This process's rows of one epoch's order, as torch's DistributedSampler splits them:
    padded by wrapping around to a multiple of the world size, then every ``size``-th row from
    ``rank``. Every process gets as many rows, so all take the same number of steps."""
    if world.size == 1:
        return order
    per_rank = -(-len(order) // world.size)
    padding = per_rank * world.size - len(order)
    if padding:
        repeats = -(-padding // len(order))
        order = torch.cat([order, order.repeat(repeats)[:padding]])
    return order[world.rank :: world.size]


def rank_batch_size(batch_size: int, world: World) -> int:
    """Each process's part of a step's ``batch_size`` rows (rounded up)."""
    return -(-batch_size // world.size)


def global_mean(total: torch.Tensor, count: int, world: World) -> float:
    """The mean over all processes of values whose local ``total`` and ``count`` are given."""
    if world.size == 1:
        return float(total) / max(count, 1)
    both = torch.stack([total.double(), torch.tensor(float(count), device=total.device).double()])
    dist.all_reduce(both)
    return float(both[0]) / max(float(both[1]), 1.0)


def from_main(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every process (so all take the same decisions)."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(obj: Any, world: World) -> list[Any]:
    """Every process's ``obj``, in rank order (each process receives the list)."""
    if world.size == 1:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def fail_for_test(epoch: int, world: World) -> None:
    """Exit abruptly where the test-only switch says so (see ``FAIL_SWITCH``)."""
    switch = os.environ.get(FAIL_SWITCH)
    if not switch or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    rank, at = (int(v) for v in switch.split(":"))
    if rank == world.rank and at == epoch:
        os._exit(1)  # like a killed process: no cleanup, no exception
