"""Resumable training state: written atomically every few epochs, resumed only when it matches.

A checkpoint holds the network, optimizer, schedule and random-number states, and the early
stopping bookkeeping, all as CPU tensors (``weights_only`` loading; any machine can resume it).
Under data parallelism rank 0 alone writes and reads it; the other ranks receive what it read
(so all resume the same epoch), and it holds each rank's own random-number state.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from sluice.model import distributed as dp

log = logging.getLogger(__name__)


def save_checkpoint(
    path: Path, settings: dict, net, opt, sched, gen, state, epoch: int, rank_rng=None
) -> None:
    """Write the training state after ``epoch`` to ``path`` (atomic rename); ``rank_rng``:
    every data-parallel rank's torch random-number state, in rank order."""
    blob = {
        "settings": settings,
        "epoch": epoch,
        "net": _to_cpu(net.state_dict()),
        "opt": _to_cpu(opt.state_dict()),
        "sched": sched.state_dict() if sched else None,
        "gen": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "best": state.best,
        "best_state": state.best_state,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "history": state.history,
        **({"rank_rng": rank_rng} if rank_rng else {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buffer = io.BytesIO()  # serialised first: torch.save reports a full disk without errno,
    torch.save(blob, buffer)  # a plain write names it (ENOSPC), and the stage says so in one line
    try:
        tmp.write_bytes(buffer.getbuffer())
        os.replace(tmp, path)  # atomic: a reader sees the old or the new checkpoint, never half
    finally:
        tmp.unlink(missing_ok=True)
    log.info("checkpoint saved at epoch %d", epoch)


def save_from_main(
    path: Path, settings: dict, net, opt, sched, gen, state, epoch: int, world: dp.World
) -> None:
    """:func:`save_checkpoint` by rank 0, with every rank's random-number state (a collective:
    every rank calls it)."""
    rank_rng = dp.gather_to_main(torch.get_rng_state(), world)
    if world.is_main:
        extra = rank_rng if world.size > 1 else None
        save_checkpoint(path, settings, net, opt, sched, gen, state, epoch, extra)


def resume(
    path: Path | None, settings: dict, net, opt, sched, gen, state, world: dp.World = dp.ALONE
) -> int:
    """Restore the state saved at ``path`` for the same ``settings``; return the epoch to start
    from (0: no usable checkpoint). With several ranks (every rank calls it), rank 0 reads the
    file and sends its content to the others: all resume the same epoch, and only rank 0's
    node needs the file."""
    blob = read_checkpoint(path, settings) if world.is_main else None
    return restore(dp.from_main(blob, world), net, opt, sched, gen, state, world.rank)


def read_checkpoint(path: Path | None, settings: dict) -> dict[str, Any] | None:
    """The checkpoint saved at ``path`` for the same ``settings`` (None: none usable)."""
    if path is None or not path.exists():
        return None
    try:
        blob: dict[str, Any] = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a corrupt checkpoint is only a lost shortcut: start over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None
    if blob.get("settings") != settings:
        log.info("checkpoint %s is for other settings; starting over", path)
        return None
    return blob


def restore(blob: dict[str, Any] | None, net, opt, sched, gen, state, rank: int = 0) -> int:
    """Load a checkpoint read by :func:`read_checkpoint` into the training objects; return the
    epoch to start from (0 for None). ``rank`` takes its own saved random-number state."""
    if blob is None:
        return 0
    net.load_state_dict(blob["net"])
    opt.load_state_dict(blob["opt"])  # moved to the parameters' device by the optimizer
    if sched is not None and blob["sched"] is not None:
        sched.load_state_dict(blob["sched"])
    gen.set_state(blob["gen"])  # batch order: the same on every rank
    rank_rng = blob.get("rank_rng") or [blob["torch_rng"]]
    if rank < len(rank_rng):  # dropout: each rank's own stream (else its fresh seed)
        torch.set_rng_state(rank_rng[rank])
    state.best, state.best_state = blob["best"], blob["best_state"]
    state.best_epoch, state.bad_epochs = blob["best_epoch"], blob["bad_epochs"]
    state.history = blob["history"]
    log.info("resuming from checkpoint at epoch %d", blob["epoch"])
    return int(blob["epoch"])


def _to_cpu(obj: Any) -> Any:
    """Tensors (in nested dicts and lists) copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
