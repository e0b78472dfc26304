"""One training loop for training and fine-tuning: early stopping, schedules, checkpoints."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sluice.model import distributed as dp
from sluice.model.checkpoint import resume, save_from_main
from sluice.model.inference import predict_proba
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
    device: str = "cpu"  # cpu | cuda | auto (cuda when available)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    deterministic: bool = False  # deterministic algorithms (CUDA), at some speed cost


@dataclass
class FitResult:
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    resumed_from: int


def make_optimizer(net: nn.Module, s: FitSettings) -> torch.optim.Optimizer:
    """The optimizer over trainable parameters only (frozen ones never reach it).

    Adam and AdamW run fused (one kernel over all parameters) where torch has it: on CPU a step
    over the n-gram network's large embedding table takes about a quarter of the time."""
    params = [p for p in net.parameters() if p.requires_grad]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
    cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return cls(params, lr=s.lr, weight_decay=s.weight_decay, fused=fused or None)


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


def ensemble_loss(loss_fn, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss of (batch, C) logits, or the mean loss of each member of (batch, k, C) logits
    (an ensemble such as TabM: every member learns from every row)."""
    if logits.dim() == 3:
        k = logits.shape[1]
        return loss_fn(logits.flatten(0, 1), y.repeat_interleave(k))
    return loss_fn(logits, y)


def train_step(net, opt, sched, loss_fn, xb: torch.Tensor, yb: torch.Tensor, amp=None):
    """One optimisation step; returns the batch loss as a detached tensor on the batch's device
    (read it once per epoch: a float() per step would wait for the device every step)."""
    amp = amp or _Precision("fp32", xb.device)
    opt.zero_grad(set_to_none=True)
    with amp.autocast():
        loss = ensemble_loss(loss_fn, net(xb), yb)
    amp.scaler.scale(loss).backward()
    amp.scaler.step(opt)
    amp.scaler.update()
    if sched is not None:
        sched.step()
    return loss.detach()


class _Precision:
    """Mixed precision on one device: an autocast context, and a gradient scaler for fp16
    (a no-op scaler otherwise, so fp32 steps are exactly the plain ones)."""

    DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

    def __init__(self, precision: str, device: torch.device) -> None:
        self.dtype = self.DTYPES.get(precision)
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)


def resolve_device(requested: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU. ``cuda`` without a GPU is a clear error."""
    from sluice.errors import SluiceError

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SluiceError("train.device is cuda, but torch sees no CUDA GPU; use auto or cpu")
    return torch.device(requested)


def eval_step(net: nn.Module, X: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict:
    """Validation loss, accuracy and macro F1."""
    prob = predict_proba(net, X)
    loss = float(nn.functional.nll_loss(torch.log(prob.clamp_min(1e-12)), y))
    pred, y = prob.argmax(1).cpu().numpy(), y.cpu().numpy()
    return {
        "val_loss": loss,
        "val_accuracy": float((pred == y).mean()),
        "val_f1_macro": macro_f1(y, pred, n_classes),
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
    """Train ``net`` and return the weights of its best validation epoch (CPU tensors).

    The data moves to ``s.device`` once; batches are slices of it. ``net`` is back on the CPU
    when this returns, so bundles and checkpoints load on any machine.

    Under torchrun (``WORLD_SIZE`` > 1) every process calls this alike: each trains on its
    shard of every epoch's order (``s.batch_size`` rows per step in all) under
    DistributedDataParallel; rank 0 scores validation, and all ranks follow its early-stopping
    decision; rank 0 alone calls ``on_epoch`` and writes checkpoints; its result is the one
    to keep.

    Args:
        data: (X_train, y_train, X_val, y_val) as float32 / int64 arrays.
        on_epoch: called with each epoch's record (for tracking and progress).
        checkpoint_path: where to save resumable state every ``checkpoint_every`` epochs; an
            existing checkpoint for the same settings is resumed.
    """
    world = dp.current_world()
    device = dp.rank_device(resolve_device(s.device), world)
    _set_determinism(s, device)
    X_tr, y_tr, X_val, y_val = (torch.from_numpy(np.array(a)).to(device) for a in data)
    torch.manual_seed(s.seed + world.rank)  # dropout: each rank draws its own masks
    gen = torch.Generator().manual_seed(s.seed)  # batch order and shifts: the same on any device
    net.to(device)
    opt, sched, loss_fn = _optimisation(net, s, len(y_tr), world, device)
    amp = _Precision(s.precision, device)
    state = _TrainState(best=-np.inf, best_state=_cpu_state(net))
    dp.join_process_group(world, device)
    model = dp.wrap(net, world, device)
    start = resume(checkpoint_path, asdict(s), net, opt, sched, gen, state, world)
    for epoch in range(start, s.epochs):
        dp.fail_for_test(epoch + 1, world)
        train_loss = _train_epoch(model, opt, sched, loss_fn, (X_tr, y_tr), s, gen, amp)
        _check_finite(train_loss, epoch + 1, s)
        scores = eval_step(net, X_val, y_val, n_classes) if world.is_main else None
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "lr": opt.param_groups[0]["lr"],
            **dp.from_main(scores, world),  # one early-stopping decision for all ranks
        }
        state.history.append(record)
        if on_epoch and world.is_main:
            on_epoch(record)
        if state.update(record, s.monitor, net, epoch + 1) >= s.patience:
            log.info("early stop at epoch %d (best epoch %d)", epoch + 1, state.best_epoch)
            break
        done = epoch + 1
        if checkpoint_path and done % s.checkpoint_every == 0 and done < s.epochs:
            save_from_main(checkpoint_path, asdict(s), net, opt, sched, gen, state, done, world)
    net.to("cpu")
    return FitResult(state.best_state, state.history, state.best_epoch, start)


def _optimisation(net: nn.Module, s: FitSettings, n_rows: int, world: dp.World, device):
    """The optimizer, its per-step schedule (steps of one rank's shard) and the loss."""
    rows = -(-n_rows // world.size)
    steps = max(1, -(-rows // dp.rank_batch_size(s.batch_size, world)))
    opt = make_optimizer(net, s)
    weight = torch.tensor(s.class_weights, dtype=torch.float32) if s.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weight.to(device) if weight is not None else None)
    return opt, make_schedule(opt, s, steps), loss_fn


def _train_epoch(model, opt, sched, loss_fn, train, s: FitSettings, gen, amp) -> float:
    """One pass over this rank's training rows; the mean batch loss over all ranks, read from
    the device once. ``model`` is the network, or the network under DistributedDataParallel."""
    X_tr, y_tr = train
    world = dp.current_world()
    net = getattr(model, "module", model)
    model.train()
    set_frozen_to_eval(net)
    order = dp.shard(batch_order(y_tr.cpu(), s, gen), world).to(X_tr.device)
    batch_size = dp.rank_batch_size(s.batch_size, world)
    total, batches = torch.zeros((), dtype=torch.float64, device=X_tr.device), 0
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        if len(idx) == 1 and i > 0:
            continue  # a last batch of one row: batch norm cannot train on it
        xb = X_tr[idx]
        if s.image_shape and s.augment_shift:
            xb = shift_images(xb, s.image_shape, s.augment_shift, gen)
        total += train_step(model, opt, sched, loss_fn, xb, y_tr[idx], amp).double()
        batches += 1
    return dp.global_mean(total, batches, world)


def _check_finite(loss: float, epoch: int, s: FitSettings) -> None:
    """Stop when training diverges, instead of going on with NaN weights (or silently keeping
    an earlier epoch's): all ranks see the same global loss, so all stop together."""
    if not np.isfinite(loss):
        from sluice.errors import SluiceError

        raise SluiceError(
            f"training diverged: the training loss became {loss} in epoch {epoch} at learning "
            f"rate {s.lr:g}; lower the learning rate (train.lr, or finetune.lr when fine-tuning)"
        )


def _set_determinism(s: FitSettings, device: torch.device) -> None:
    """Seeded runs repeat exactly on the CPU; on CUDA only with deterministic algorithms."""
    if s.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def _cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights on the CPU (the best epoch's, kept while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


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
            self.best_state = _cpu_state(net)
        else:
            self.bad_epochs += 1
        return self.bad_epochs
