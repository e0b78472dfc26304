"""One training loop for training and fine-tuning: early stopping, schedules, checkpoints."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sluice.model.nets import set_frozen_to_eval

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    """Everything the loop needs; train and finetune build it from their params sections."""

    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    epochs: int
    batch_size: int
    patience: int
    monitor: str
    sampler: str
    augment_shift: int
    seed: int
    image_shape: list[int] | None = None
    class_weights: list[float] | None = None
    checkpoint_every: int = 5


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    resumed_from: int


def make_optimizer(net: nn.Module, s: FitSettings) -> torch.optim.Optimizer:
    """The optimizer over trainable parameters only (frozen ones never reach it)."""
    params = [p for p in net.parameters() if p.requires_grad]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
    cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=s.lr, weight_decay=s.weight_decay)


def make_schedule(opt: torch.optim.Optimizer, s: FitSettings, steps_per_epoch: int):
    """Per-step learning-rate schedule (None for a constant rate)."""
    total = s.epochs * steps_per_epoch
    if s.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=total)
    if s.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if s.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 3), gamma=0.1)
    return None


def batch_order(y: torch.Tensor, s: FitSettings, gen: torch.Generator) -> torch.Tensor:
    """Row indices for one epoch: a permutation, or class-balanced draws with replacement."""
    if s.sampler == "balanced":
        counts = torch.bincount(y).float()
        weights = (1.0 / counts)[y]
        return torch.multinomial(weights, len(y), replacement=True, generator=gen)
    return torch.randperm(len(y), generator=gen)


def shift_images(x: torch.Tensor, shape: list[int], max_shift: int, gen: torch.Generator):
    """Shift each image by up to ``max_shift`` pixels in each direction, padding with the minimum.

    x: (batch, H*W) -> (batch, H*W).
    """
    h, w = shape
    n, m = x.shape[0], max_shift
    img = x.view(n, h, w)
    padded = torch.nn.functional.pad(img, (m, m, m, m), value=float(x.min()))
    dy = torch.randint(0, 2 * m + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * m + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :]  # (n, 1, w)
    out = padded[torch.arange(n)[:, None, None], rows, cols]
    return out.reshape(n, h * w)


def train_step(net, opt, sched, loss_fn, xb: torch.Tensor, yb: torch.Tensor) -> float:
    """One optimisation step; returns the batch loss."""
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(net(xb), yb)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return float(loss.detach())


@torch.no_grad()
def predict_proba(
    net: nn.Module, X: torch.Tensor, batch_size: int = 4096, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Class probabilities (n, K) in eval mode; the softmax is taken in ``dtype``.

    Rows of float32 probabilities sum to 1 only within about 1e-7, which scikit-learn's
    ``log_loss`` rejects in float64: callers that hand probabilities on ask for float64.
    """
    net.eval()
    parts = [
        torch.softmax(net(X[i : i + batch_size]).to(dtype), dim=1)
        for i in range(0, len(X), batch_size)
    ]
    return torch.cat(parts) if parts else torch.empty(0)


def eval_step(net: nn.Module, X: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict:
    """Validation loss, accuracy and macro F1."""
    prob = predict_proba(net, X)
    loss = float(nn.functional.nll_loss(torch.log(prob.clamp_min(1e-12)), y))
    pred = prob.argmax(1).numpy()
    return {
        "val_loss": loss,
        "val_accuracy": float((pred == y.numpy()).mean()),
        "val_f1_macro": macro_f1(y.numpy(), pred, n_classes),
    }


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro F1 over all classes (zero for a class never predicted nor present)."""
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, -1)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))


def fit(
    net: nn.Module,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_classes: int,
    s: FitSettings,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoint_path: Path | None = None,
) -> FitResult:
    """Train ``net`` and return the weights of its best validation epoch.

    Args:
        data: (X_train, y_train, X_val, y_val) as float32 / int64 arrays.
        on_epoch: called with each epoch's record (for tracking and progress).
        checkpoint_path: where to save resumable state every ``checkpoint_every`` epochs; an
            existing checkpoint for the same settings is resumed.
    """
    X_tr, y_tr, X_val, y_val = (torch.from_numpy(np.array(a)) for a in data)
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    steps = max(1, -(-len(y_tr) // s.batch_size))
    opt, sched = make_optimizer(net, s), None
    sched = make_schedule(opt, s, steps)
    weight = torch.tensor(s.class_weights, dtype=torch.float32) if s.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    state = _TrainState(best=-np.inf, best_state=copy.deepcopy(net.state_dict()))
    start = _resume(checkpoint_path, s, net, opt, sched, gen, state)
    for epoch in range(start, s.epochs):
        net.train()
        set_frozen_to_eval(net)
        order, losses = batch_order(y_tr, s, gen), []
        for i in range(0, len(order), s.batch_size):
            idx = order[i : i + s.batch_size]
            xb = X_tr[idx]
            if s.image_shape and s.augment_shift:
                xb = shift_images(xb, s.image_shape, s.augment_shift, gen)
            losses.append(train_step(net, opt, sched, loss_fn, xb, y_tr[idx]))
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "lr": opt.param_groups[0]["lr"],
            **eval_step(net, X_val, y_val, n_classes),
        }
        state.history.append(record)
        if on_epoch:
            on_epoch(record)
        if state.update(record, s.monitor, net, epoch + 1) >= s.patience:
            log.info("early stop at epoch %d (best epoch %d)", epoch + 1, state.best_epoch)
            break
        if checkpoint_path and (epoch + 1) % s.checkpoint_every == 0 and epoch + 1 < s.epochs:
            _save_checkpoint(checkpoint_path, s, net, opt, sched, gen, state, epoch + 1)
    return FitResult(state.best_state, state.history, state.best_epoch, start)


@dataclass
class _TrainState:
    best: float
    best_state: dict[str, torch.Tensor]
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] | None = None

    def __post_init__(self) -> None:
        self.history = self.history or []

    def update(self, record: dict[str, float], monitor: str, net: nn.Module, epoch: int) -> int:
        """Keep the best weights; return how many epochs in a row did not improve."""
        score = record["val_f1_macro"] if monitor == "f1_macro" else -record["val_loss"]
        if score > self.best:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_state = copy.deepcopy(net.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs


def _save_checkpoint(path, s, net, opt, sched, gen, state: _TrainState, epoch: int) -> None:
    blob = {
        "settings": asdict(s),
        "epoch": epoch,
        "net": net.state_dict(),
        "opt": opt.state_dict(),
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


def _resume(path, s, net, opt, sched, gen, state: _TrainState) -> int:
    if path is None or not path.exists():
        return 0
    try:
        blob: dict[str, Any] = torch.load(path, weights_only=True)
    except Exception as exc:  # a corrupt checkpoint is only a lost shortcut: start over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return 0
    if blob.get("settings") != asdict(s):
        log.info("checkpoint %s is for other settings; starting over", path)
        return 0
    net.load_state_dict(blob["net"])
    opt.load_state_dict(blob["opt"])
    if sched is not None and blob["sched"] is not None:
        sched.load_state_dict(blob["sched"])
    gen.set_state(blob["gen"])
    torch.set_rng_state(blob["torch_rng"])
    state.best, state.best_state = blob["best"], blob["best_state"]
    state.best_epoch, state.bad_epochs = blob["best_epoch"], blob["bad_epochs"]
    state.history = blob["history"]
    log.info("resuming from checkpoint at epoch %d", blob["epoch"])
    return int(blob["epoch"])
