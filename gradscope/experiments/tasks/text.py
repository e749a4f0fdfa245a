"""Character-level language modelling on text shipped with Python: ``pydoc_data.topics``.

The corpus is the help text of every ``pydoc`` topic, joined in sorted topic order (≈ 465k characters on
CPython 3.11; it differs slightly between Python versions, so `describe` records its SHA-256). No download.

* Vocabulary: the sorted set of characters of the whole corpus; inputs are one-hot ``(B, T, V)``.
* Split (deterministic, contiguous): the first 90% of the characters are ``train``, the next 5% ``valid``,
  the last 5% ``test``.
* A sample is a window of ``T + 1`` characters at a uniformly random offset of its split: ``xs`` = the first
  T (one-hot), ``ys`` = the next character at every step (read at every step).
* Loss: mean cross-entropy in nats; metric: **bits per character** = loss / ln 2 (as in the char-PTB
  results of Pascanu et al. 2013 and Li et al. 2018). A uniform predictor scores exactly ``log2(V)``.
* Baseline: the entropy of the training unigram distribution (nats), the best context-free predictor.
  Success (gradscope's convention; the papers report BPC without a threshold): BPC below that entropy
  (in bits), i.e. the model uses context.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradscope._errors import ConfigError
from gradscope.experiments.tasks._base import Task, cross_entropy, positive_int, register

SPLITS = {"train": (0.0, 0.90), "valid": (0.90, 0.95), "test": (0.95, 1.0)}


@functools.lru_cache(maxsize=1)
def corpus() -> str:
    """The corpus text (cached)."""
    from pydoc_data import topics

    return "\n".join(topics.topics[k] for k in sorted(topics.topics))


@functools.lru_cache(maxsize=1)
def _encoded():
    """(vocabulary, character ids of the corpus, SHA-256 of the corpus) — computed once."""
    text = corpus()
    vocab = "".join(sorted(set(text)))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((lookup[c] for c in text), dtype=np.int32, count=len(text))
    ids.setflags(write=False)
    return vocab, ids, hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Text(Task, name="text", readout="every", metric_name="bpc", higher_is_better=False):
    """Character-level LM on the ``pydoc_data.topics`` corpus (see the module docstring)."""

    length: int = 50
    # the corpus, set by __post_init__ (not options: kept out of init, repr, eq and hash)
    _vocab: str = dataclasses.field(init=False, repr=False, compare=False)
    _splits: dict[str, np.ndarray] = dataclasses.field(init=False, repr=False, compare=False)
    _sha256: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        positive_int("length", self.length)
        vocab, ids, sha = _encoded()
        n = len(ids)
        splits = {k: ids[int(round(a * n)) : int(round(b * n))] for k, (a, b) in SPLITS.items()}
        short = [k for k, v in splits.items() if len(v) < self.length + 1]
        if short:
            raise ConfigError(
                f"length={self.length!r} is not allowed: the {short[0]!r} split has only "
                f"{len(splits[short[0]])} characters"
            )
        object.__setattr__(self, "_vocab", vocab)
        object.__setattr__(self, "_splits", splits)
        object.__setattr__(self, "_sha256", sha)

    @property
    def vocab(self) -> str:
        return self._vocab

    input_size = property(lambda self: len(self._vocab))
    output_size = property(lambda self: len(self._vocab))

    @property
    def baseline(self) -> float:
        p = np.bincount(self._splits["train"], minlength=len(self._vocab)) / len(self._splits["train"])
        p = p[p > 0]
        return float(-np.sum(p * np.log(p)))

    def split(self, split: str = "train") -> np.ndarray:
        """The character ids of a split."""
        try:
            return self._splits[split]
        except KeyError:
            raise ConfigError(f"split={split!r} is not allowed: use one of {', '.join(SPLITS)}") from None

    def encode(self, s: str) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self._vocab)}
        return np.array([lookup[c] for c in s], np.int32)

    def decode(self, ids: ArrayLike) -> str:
        return "".join(self._vocab[int(i)] for i in np.asarray(ids).ravel())

    def _windows(self, ids, starts):
        T = self.length
        win = jax.vmap(lambda s: jax.lax.dynamic_slice(ids, (s,), (T + 1,)))(starts)
        return jax.nn.one_hot(win[:, :T], self.input_size, dtype=jnp.float32), win[:, 1:]

    def sample(self, key: jax.Array, batch: int, split: str = "train") -> tuple[jax.Array, jax.Array]:
        """``xs (B, T, V)`` one-hot characters, ``ys (B, T)`` the next character ids."""
        ids = self.split(split)
        starts = jax.random.randint(key, (batch,), 0, len(ids) - self.length)
        return self._windows(jnp.asarray(ids), starts)

    def dataset(self, split: str = "test") -> tuple[jax.Array, jax.Array]:
        """The split cut into consecutive non-overlapping windows (``xs (N, T, V)``, ``ys (N, T)``)."""
        ids = self.split(split)
        n = (len(ids) - 1) // self.length
        return self._windows(jnp.asarray(ids), jnp.arange(n) * self.length)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            corpus="pydoc_data.topics",
            corpus_sha256=self._sha256,
            vocab_size=len(self._vocab),
            split_sizes={k: len(v) for k, v in self._splits.items()},
        )
        return out

    def loss(self, preds: jax.Array, ys: jax.Array) -> jax.Array:
        return cross_entropy(preds, ys)

    def metric(self, preds: jax.Array, ys: jax.Array) -> jax.Array:
        return cross_entropy(preds, ys) / math.log(2.0)

    def success(self, metric: float) -> bool:
        return bool(float(metric) < self.baseline / math.log(2.0))


@register("text", "character-level LM on Python's pydoc_data.topics text; bits per character")
def build_text(length: int | None = None) -> Text:
    return Text(length=50 if length is None else length)
