"""Sequential and permuted digits: scikit-learn's bundled 8×8 digits read pixel by pixel (64 steps).

A small, download-free stand-in for pixel-by-pixel MNIST (Le et al. 2015) and permuted MNIST: each image
is one sequence ``x_t = pixel_t / 16`` (row-major, ``T = 64``, one input channel), the class is read at
the last step. The permuted variant applies one fixed permutation of the 64 pixels, drawn from ``seed``,
to every image, which moves the spatially close pixels far apart in time.

Data: ``sklearn.datasets.load_digits`` (1,797 images, shipped inside scikit-learn; no network access).
Split (deterministic): the images are shuffled once with ``numpy.random.default_rng(0)`` and the first
80% form the training split, the rest the test split.

scikit-learn is an optional dependency (``pip install 'gradscope[data]'`` or ``pip install scikit-learn``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope._errors import ConfigError, GradscopeError
from gradscope.experiments.tasks._base import Task, cross_entropy, register

LENGTH = 64
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0


class MissingDependencyError(GradscopeError, ImportError):
    """An optional dependency needed for this feature is not installed."""


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError(
            "the digits tasks need scikit-learn, which is not installed: "
            "run `pip install scikit-learn` (or `pip install 'gradscope[data]'`)"
        ) from None
    return _cached(load_digits)


@functools.lru_cache(maxsize=1)
def _cached(load_digits):
    d = load_digits()
    return np.asarray(d.data, np.float32) / 16.0, np.asarray(d.target, np.int32)


def permutation(seed: int) -> np.ndarray:
    """The fixed pixel permutation of the permuted task for ``seed``."""
    return np.random.default_rng(seed).permutation(LENGTH)


@dataclasses.dataclass(frozen=True)
class Digits(Task, readout="last", metric_name="accuracy", higher_is_better=True):
    """Pixel-by-pixel 8×8 digits (``permuted=False``) or their permuted variant; 10 classes.

    Cross-entropy loss; metric: accuracy; baseline: the entropy of the training class prior (≈ log 10),
    the loss of the best predictor that ignores the pixels. Success (gradscope's convention; the MNIST
    papers report accuracies without a threshold): accuracy ≥ 0.9.
    """

    length: int = LENGTH
    permuted: bool = False
    seed: int = 0
    # the train/test arrays, set by __post_init__ (not an option: kept out of init, repr, eq and hash)
    _x: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.length != LENGTH:
            raise ConfigError(f"length={self.length!r} is not allowed: the digits tasks have exactly {LENGTH} steps")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} is not allowed: expected a non-negative integer")
        x, y = _load_digits()
        order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
        n_train = int(round(TRAIN_FRACTION * len(y)))
        if self.permuted:
            x = x[:, permutation(self.seed)]
        data = {
            "train": (x[order[:n_train]], y[order[:n_train]]),
            "test": (x[order[n_train:]], y[order[n_train:]]),
        }
        object.__setattr__(self, "_x", data)

    @property
    def name(self) -> str:  # type: ignore[override]
        return "permuted-digits" if self.permuted else "digits"

    input_size = property(lambda self: 1)
    output_size = property(lambda self: 10)

    @property
    def baseline(self) -> float:
        p = np.bincount(self._x["train"][1], minlength=10) / len(self._x["train"][1])
        return float(-np.sum(p[p > 0] * np.log(p[p > 0])))

    def split_size(self, split: str = "train") -> int:
        return len(self._data(split)[1])

    def _data(self, split):
        try:
            return self._x[split]
        except KeyError:
            raise ConfigError(f"split={split!r} is not allowed: use 'train' or 'test'") from None

    def sample(self, key: jax.Array, batch: int, split: str = "train") -> tuple[jax.Array, jax.Array]:
        """A batch drawn uniformly with replacement: ``xs (B, 64, 1)``, ``ys (B,)`` digit labels."""
        x, y = self._data(split)
        idx = jax.random.randint(key, (batch,), 0, len(y))
        return jnp.asarray(x)[idx][..., None], jnp.asarray(y)[idx]

    def dataset(self, split: str = "test") -> tuple[jax.Array, jax.Array]:
        """The whole split, in its fixed order: ``xs (N, 64, 1)``, ``ys (N,)``."""
        x, y = self._data(split)
        return jnp.asarray(x)[..., None], jnp.asarray(y)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(train_size=self.split_size("train"), test_size=self.split_size("test"), split_seed=SPLIT_SEED)
        return out

    def loss(self, preds: jax.Array, ys: jax.Array) -> jax.Array:
        return cross_entropy(preds, ys)

    def metric(self, preds: jax.Array, ys: jax.Array) -> jax.Array:
        return jnp.mean(jnp.argmax(preds, axis=-1) == ys)

    def success(self, metric: float) -> bool:
        return bool(float(metric) >= 0.9)


@register("digits", "8x8 digits read pixel by pixel (64 steps, 1 input), 10 classes; needs scikit-learn")
def build_digits(length: int | None = None) -> Digits:
    return Digits(length=LENGTH if length is None else length)


@register("permuted-digits", "8x8 digits with a fixed pixel permutation (seed), 64 steps; needs scikit-learn")
def build_permuted_digits(length: int | None = None, *, seed: int = 0) -> Digits:
    return Digits(length=LENGTH if length is None else length, permuted=True, seed=seed)
