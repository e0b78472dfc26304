"""Resumable training state: written atomically every few epochs, resumed only when it matches.

A checkpoint holds the network, optimizer, schedule and random-number states, and the early
stopping bookkeeping, all as CPU tensors (``weights_only`` loading; any machine can resume it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def save_checkpoint(path: Path, settings: dict, net, opt, sched, gen, state, epoch: int) -> None:
    """Write the training state after ``epoch`` to ``path`` (atomic rename)."""
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
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old or the new checkpoint, never half
    finally:
        tmp.unlink(missing_ok=True)
    log.info("checkpoint saved at epoch %d", epoch)


def resume(path: Path | None, settings: dict, net, opt, sched, gen, state) -> int:
    """Restore the state saved at ``path`` for the same ``settings``; return the epoch to start
    from (0: no usable checkpoint)."""
    if path is None or not path.exists():
        return 0
    try:
        blob: dict[str, Any] = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a corrupt checkpoint is only a lost shortcut: start over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return 0
    if blob.get("settings") != settings:
        log.info("checkpoint %s is for other settings; starting over", path)
        return 0
    net.load_state_dict(blob["net"])
    opt.load_state_dict(blob["opt"])  # moved to the parameters' device by the optimizer
    if sched is not None and blob["sched"] is not None:
        sched.load_state_dict(blob["sched"])
    gen.set_state(blob["gen"])
    torch.set_rng_state(blob["torch_rng"])
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
