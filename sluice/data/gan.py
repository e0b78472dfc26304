"""GAN over-sampling: an imbalanced-learn over-sampler whose new rows come from a class-conditional
WGAN-GP (Gulrajani et al. 2017) trained on the rows given to ``fit_resample`` and nothing else.

Rows are encoded for the networks as standardised numeric columns (gaps filled with the column's
median of those rows, a deliberately simple choice) followed by one one-hot block per categorical
column. The generator writes numeric values directly and a softmax per categorical block; during
training the blocks are relaxed with Gumbel-softmax (Jang et al. 2017) so the critic cannot tell
fake rows by their soft values, and new rows draw their category from that softmax. Numeric
values are clipped to the range seen in training and rounded where every training value is a
whole number. A new row that exactly repeats a training row is drawn again, up to 10 times (with
only categorical columns of few values every combination may already exist: such rows are kept,
and the stage's check counts them). Training batches are class-balanced, so a small class
conditions the generator as often as a large one. Everything random comes from one seed derived
from ``random_state``, inside a forked torch RNG: the same ``random_state`` gives the same rows
(at a given torch thread count, which is left as the caller set it).
"""

from __future__ import annotations

import logging
import math
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from imblearn.over_sampling.base import BaseOverSampler
from imblearn.utils import check_target_type
from scipy import sparse
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn_compat.utils.validation import validate_data
from torch import nn
from torch.nn import functional as F

from sluice.progress import track

log = logging.getLogger(__name__)

GUMBEL_TAU = 0.2  # CTGAN's temperature: close to one-hot, still differentiable
GP_WEIGHT = 10.0  # the gradient penalty's weight in the WGAN-GP paper
REDRAW_ROUNDS = 10  # attempts to replace generated rows that copy a training row


class GANOverSampler(BaseOverSampler):
    """Over-sample with a class-conditional WGAN-GP of small MLPs (PyTorch).

    Args:
        sampling_strategy: as every imbalanced-learn over-sampler (``"auto"``: all classes
            but the largest up to its size).
        random_state: int, ``RandomState`` or None; an int gives identical rows run after run.
        categorical_features: None (all numeric), ``"auto"`` (text, category and bool columns
            of a DataFrame) or column indices; those columns may hold any values, NaN included.
        epochs: passes over the rows (steps per epoch: rows / batch_size, at least one).
        batch_size: rows per step (drawn class-balanced, with replacement).
        latent_dim: size of the generator's noise input.
        hidden: width of the two hidden layers of generator and critic.
        lr: Adam learning rate of both networks (betas 0.5, 0.9 as in WGAN-GP).
        critic_steps: critic updates per generator update.
    """

    _parameter_constraints: dict = {
        **BaseOverSampler._parameter_constraints,
        "categorical_features": [None, "array-like", StrOptions({"auto"})],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "critic_steps": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        sampling_strategy="auto",
        random_state=None,
        categorical_features=None,
        epochs=100,
        batch_size=64,
        latent_dim=32,
        hidden=128,
        lr=1e-3,
        critic_steps=3,
    ):
        super().__init__(sampling_strategy=sampling_strategy)
        self.random_state = random_state
        self.categorical_features = categorical_features
        self.epochs = epochs
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.lr = lr
        self.critic_steps = critic_steps

    def _check_X_y(self, X, y, accept_sparse=None):
        y, binarize_y = check_target_type(y, indicate_one_vs_all=True)
        self.categorical_features_ = _categorical_indices(X, self.categorical_features)
        if len(self.categorical_features_):  # any values: keep them as they are (object array)
            X, y = validate_data(self, X=X, y=y, reset=True, dtype=None, ensure_all_finite=False)
        else:
            X, y = validate_data(
                self,
                X=X,
                y=y,
                reset=True,
                accept_sparse=["csr", "csc"],
                dtype=[np.float64, np.float32],
                ensure_all_finite="allow-nan",
            )
        return X, y, binarize_y

    def _fit_resample(self, X, y):
        dense = X.toarray() if sparse.issparse(X) else X
        self.codec_ = _Codec(self.categorical_features_).fit(dense)
        classes, codes = np.unique(y, return_inverse=True)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with torch.random.fork_rng(devices=[]):  # the caller's global torch RNG is untouched
            torch.manual_seed(seed)
            data = torch.from_numpy(self.codec_.encode(dense))
            self.generator_ = _train(data, torch.from_numpy(codes), len(classes), self)
            known = _row_hashes(dense)
            parts = [
                (self._draw(np.flatnonzero(classes == label)[0], n, known, dense.dtype), label)
                for label, n in self.sampling_strategy_.items()
                if n > 0
            ]
        X_new = np.vstack([dense[:0], *(rows for rows, _ in parts)])
        y_new = np.concatenate([y[:0], *(np.full(len(r), c, dtype=y.dtype) for r, c in parts)])
        if sparse.issparse(X):
            X_out = sparse.vstack([X, sparse.csr_matrix(X_new)]).asformat(X.format)
        else:
            X_out = np.vstack([X, X_new])
        return X_out, np.concatenate([y, y_new])

    def _draw(self, class_index: int, n: int, known: np.ndarray, dtype) -> np.ndarray:
        """``n`` new rows of one class; rows that copy a training row are drawn again."""
        rows = self._generate(class_index, n, dtype)
        for _ in range(REDRAW_ROUNDS):
            copies = np.flatnonzero(np.isin(_row_hashes(rows), known))
            if not len(copies):
                break
            rows[copies] = self._generate(class_index, len(copies), dtype)
        return rows

    @torch.no_grad()
    def _generate(self, class_index: int, n: int, dtype) -> np.ndarray:
        cond = torch.zeros(n, self.generator_.n_classes)
        cond[:, class_index] = 1.0
        encoded = self.generator_(torch.randn(n, self.latent_dim), cond, hard=True)
        return self.codec_.decode(encoded.double().numpy(), dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # numeric gaps are filled with the median to train
        return tags


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row: equal rows, equal hashes."""
    return pd.util.hash_pandas_object(pd.DataFrame(X), index=False).to_numpy()


def _categorical_indices(X, categorical_features) -> np.ndarray:
    """Indices of the categorical columns named by ``categorical_features``."""
    if categorical_features is None:
        return np.array([], dtype=int)
    if isinstance(categorical_features, str):  # "auto"
        if not hasattr(X, "dtypes"):
            raise ValueError("categorical_features='auto' needs a pandas DataFrame")
        return np.flatnonzero(
            [
                not pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t)
                for t in X.dtypes
            ]
        )
    picked = np.asarray(categorical_features)
    return np.flatnonzero(picked) if picked.dtype == bool else picked.astype(int)


class _Codec:
    """Rows <-> the networks' space: standardised numeric columns, then one-hot categories."""

    def __init__(self, categorical: np.ndarray):
        self.categorical = [int(i) for i in categorical]

    def fit(self, X: np.ndarray) -> _Codec:
        self.numeric = [i for i in range(X.shape[1]) if i not in self.categorical]
        self.scaler = self.onehot = None
        self.blocks: list[int] = []
        if self.numeric:
            values = X[:, self.numeric].astype(np.float64)
            self.scaler = make_pipeline(
                SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
            ).fit(values)
            with warnings.catch_warnings():  # an all-missing column has no range: stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                self.low, self.high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            # whole numbers in training (counts, pixels, 0/1 flags) stay whole in new rows
            self.whole = np.all(np.isnan(values) | (values == np.round(values)), axis=0)
        if self.categorical:
            self.onehot = OneHotEncoder(sparse_output=False, dtype=np.float32)
            self.onehot.fit(X[:, self.categorical])
            self.blocks = [len(c) for c in self.onehot.categories_]
        return self

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(self.blocks)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """(rows, width) float32: numeric columns, then each categorical column's one-hot block."""
        parts = [np.empty((len(X), 0), dtype=np.float32)]
        if self.scaler is not None:
            values = X[:, self.numeric].astype(np.float64)
            parts.append(self.scaler.transform(values).astype(np.float32))
        if self.onehot is not None:
            parts.append(self.onehot.transform(X[:, self.categorical]))
        return np.hstack(parts)

    def decode(self, Z: np.ndarray, dtype) -> np.ndarray:
        """Encoded rows (one-hot blocks exact) back to the columns and dtype of the input."""
        out = np.empty((len(Z), len(self.numeric) + len(self.categorical)), dtype=dtype)
        n_num = len(self.numeric)
        if self.scaler is not None:
            values = self.scaler[-1].inverse_transform(Z[:, :n_num])
            values = np.clip(values, self.low, self.high)
            out[:, self.numeric] = np.where(self.whole, np.round(values), values)
        if self.onehot is not None:
            out[:, self.categorical] = self.onehot.inverse_transform(Z[:, n_num:])
        return out


class _Generator(nn.Module):
    """(noise, class one-hot) -> an encoded row: numeric values, then one softmax per block."""

    def __init__(self, latent: int, n_classes: int, hidden: int, n_numeric: int, blocks: list):
        super().__init__()
        self.n_classes, self.n_numeric, self.blocks = n_classes, n_numeric, blocks
        self.net = nn.Sequential(
            nn.Linear(latent + n_classes, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_numeric + sum(blocks)),
        )

    def forward(self, z: torch.Tensor, cond: torch.Tensor, hard: bool = False) -> torch.Tensor:
        out = self.net(torch.cat([z, cond], dim=1))  # (batch, width)
        parts = [out[:, : self.n_numeric]]
        for logits in torch.split(out[:, self.n_numeric :], self.blocks, dim=1):
            if hard:  # new rows: a category drawn from the softmax (Gumbel-max), exactly one-hot
                drawn = F.gumbel_softmax(logits, tau=GUMBEL_TAU, hard=True).argmax(1)
                parts.append(F.one_hot(drawn, logits.shape[1]).to(out.dtype))
            else:
                parts.append(F.gumbel_softmax(logits, tau=GUMBEL_TAU))
        return torch.cat(parts, dim=1)


def _critic(width: int, n_classes: int, hidden: int) -> nn.Module:
    """(encoded row ++ class one-hot) -> a score; no batch norm, as the gradient penalty needs."""
    return nn.Sequential(
        nn.Linear(width + n_classes, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, 1),
    )


def _train(data: torch.Tensor, labels: torch.Tensor, n_classes: int, opts) -> _Generator:
    """WGAN-GP on (data, labels) with class-balanced batches; returns the generator."""
    codec: _Codec = opts.codec_
    gen = _Generator(opts.latent_dim, n_classes, opts.hidden, len(codec.numeric), codec.blocks)
    critic = _critic(codec.width, n_classes, opts.hidden)
    adam = {"lr": opts.lr, "betas": (0.5, 0.9), "foreach": True}  # foreach: fewer small ops
    opt_g = torch.optim.Adam(gen.parameters(), **adam)
    opt_c = torch.optim.Adam(critic.parameters(), **adam)
    counts = torch.bincount(labels, minlength=n_classes).double()
    weights = 1.0 / counts[labels]  # every class drawn equally often
    steps = opts.epochs * max(1, math.ceil(len(data) / opts.batch_size))
    for _ in track(range(steps), "resample gan", unit="steps"):
        for _ in range(opts.critic_steps):
            real, cond, fake = _batch(data, labels, weights, gen, n_classes, opts)
            loss_c = critic(torch.cat([fake.detach(), cond], 1)).mean()
            loss_c = loss_c - critic(torch.cat([real, cond], 1)).mean()
            loss_c = loss_c + GP_WEIGHT * _penalty(critic, real, fake.detach(), cond)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        _, cond, fake = _batch(data, labels, weights, gen, n_classes, opts)
        loss_g = -critic(torch.cat([fake, cond], 1)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    log.info("gan: %d steps, last critic loss %.4f, generator loss %.4f", steps, loss_c, loss_g)
    return gen


def _batch(data, labels, weights, gen, n_classes, opts):
    """A class-balanced batch of real rows, their class one-hots and as many generated rows."""
    idx = torch.multinomial(weights, opts.batch_size, replacement=True)
    cond = F.one_hot(labels[idx], n_classes).float()  # (batch, n_classes)
    fake = gen(torch.randn(opts.batch_size, opts.latent_dim), cond)  # (batch, width)
    return data[idx], cond, fake


def _penalty(critic: nn.Module, real, fake, cond) -> torch.Tensor:
    """WGAN-GP: (|grad of the critic at points between real and fake rows| - 1)^2."""
    alpha = torch.rand(len(real), 1)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(torch.cat([mixed, cond], 1))
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()
