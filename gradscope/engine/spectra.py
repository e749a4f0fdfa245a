"""Singular-value and Lyapunov spectra.

* `singular_values`: the full spectrum (or top k) of ``∂S_T/∂S_k`` at chosen lags, as log10, from the
  log-scaled running product (exact up to float rounding; no overflow).
* `step_singular_values`: spectra of the one-step Jacobians ``J[t]``.
* `lyapunov_spectrum`: Benettin's QR method (Engelken et al. 2020; Vogt et al. 2022): propagate an
  orthonormal frame ``Q ← qr(J[t] Q)`` and average ``log|diag R|`` — natural log per step. The frame
  starts as the first k columns of the identity.

Diagonal and complex-diagonal models need no matrices (the fast path of `gradscope.engine.products`):
the singular values of a diagonal product are the sorted ``|∏ a_n|`` (complex: each ``|∏ λ_n|`` twice,
the two singular values of the rotation-scaling ``|P_n| R(φ_n)``), those of one step the sorted ``|a_n|``,
and the Lyapunov exponents are exactly the time averages of ``log|a_{t,n}|`` (complex: each of
``log|λ_{t,n}|`` twice) — the k largest of them, with no frame to converge.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradscope._errors import ConfigError
from gradscope.engine import logspace
from gradscope.engine._memory import plan_stage
from gradscope.engine._prep import LN10, is_diagonal, log_diagonals, per_example, prepare, step_jac, structure


@dataclasses.dataclass(frozen=True)
class Lyapunov:
    """``exponents`` (…, k) sorted descending, nats per step; ``trace`` (…, T−warmup, k): the running
    estimate after each step (sorted), to judge convergence."""

    exponents: jax.Array
    trace: jax.Array
    warmup: int


@per_example
def _lyap_dense(model, xs, S, k, warmup):
    T, d = xs.shape[0], S.shape[-1]
    Q0 = jnp.eye(d, k, dtype=S.dtype)

    def body(c, t):
        Q, acc = c
        J = step_jac(model, xs[t], S[t], t)[0]
        Q, R = jnp.linalg.qr(J @ Q)
        lr = jnp.log(jnp.abs(jnp.diagonal(R)))
        acc = acc + jnp.where(t >= warmup, lr, 0.0)
        return (Q, acc), acc

    _, accs = jax.lax.scan(body, (Q0, jnp.zeros((k,), S.dtype)), jnp.arange(T))
    return accs[warmup:]


def _state_logs(model, la):
    """Per-unit log-magnitudes ``(…, n)`` → one per singular value of the state ``(…, d)``: a complex unit
    twice (its 2 × 2 block ``|λ| R(arg λ)`` has both singular values |λ|)."""
    return jnp.concatenate([la, la], -1) if structure(model) == "complex-diagonal" else la


def _top_desc(x, k):
    """The k largest along the last axis, descending (−inf sorts last)."""
    return -jnp.sort(-x, axis=-1)[..., :k]


@per_example
def _lyap_diag(model, xs, S, k, warmup):
    la = _state_logs(model, log_diagonals(model, xs, S)[0])
    return jnp.cumsum(la[warmup:], axis=0)


@functools.partial(jax.jit, static_argnames=("batched", "k", "warmup", "diag"))
def _lyapunov(model, xs, S, batched, k, warmup, diag):
    """``diag``: the exact fast path (the model must be `is_diagonal`): running means of every unit's
    ``log|a|``, of which the k largest are kept at each step; dense: QR with a k-column frame."""
    f = _lyap_diag if diag else _lyap_dense
    accs = f(model, xs, S, k, warmup, batched=batched)
    steps = jnp.arange(1, accs.shape[-2] + 1, dtype=accs.dtype)[:, None]
    trace = _top_desc(accs / steps, k)
    return trace[..., -1, :], trace


def lyapunov_spectrum(model: Any, xs: ArrayLike, state0: Any = None, k: int | None = None, warmup: int = 0) -> Lyapunov:
    """The k largest Lyapunov exponents (default all d) of the state map along ``xs``, averaged over the
    steps after ``warmup``; natural log per step. Exact for diagonal and complex-diagonal models."""
    plan_stage("lyapunov", model, xs, k=k)  # before the rollout: refuse what would not fit
    pxs, S, batched = prepare(model, xs, state0)
    T, d = pxs.shape[-2], S.shape[-1]
    k = d if k is None else k
    if not (isinstance(k, int) and 1 <= k <= d):
        raise ConfigError(f"k={k!r} is not allowed: expected an integer between 1 and the state size {d}")
    if not (isinstance(warmup, int) and 0 <= warmup < T):
        raise ConfigError(f"warmup={warmup!r} is not allowed: expected an integer in [0, T) with T={T}")
    ex, trace = _lyapunov(model, pxs, S, batched, k, warmup, is_diagonal(model))
    return Lyapunov(ex, trace, warmup)


@dataclasses.dataclass(frozen=True)
class Spectra:
    """``log10_sv[..., i, :]``: log10 singular values (descending) of ``∂S_T/∂S_k`` at ``k = ks[i]``."""

    ks: np.ndarray
    log10_sv: jax.Array

    @property
    def lags(self) -> jax.Array:
        return self.ks[-1] * 0 + (self.length - self.ks)

    length: int = 0


def default_ks(T: int, n: int = 12) -> np.ndarray:
    """About n start indices k with log-spaced lags T−k between 1 and T."""
    lags = np.unique(np.round(np.geomspace(1, T, n)).astype(int))
    return np.sort(T - lags)


@per_example
def _sv_dense(model, xs, S, ks, top):
    T, d = xs.shape[0], S.shape[-1]
    sel = jnp.zeros((T,), bool).at[jnp.asarray(ks)].set(True)
    pos = jnp.zeros((T,), jnp.int32).at[jnp.asarray(ks)].set(jnp.arange(len(ks), dtype=jnp.int32))

    def body(c, k):
        P, out = c
        P = logspace.update(P, step_jac(model, xs[k], S[k], k)[0])

        def record(out):
            return out.at[pos[k]].set(logspace.log10_singular_values(P)[:top])

        out = jax.lax.cond(sel[k], record, lambda o: o, out)
        return (P, out), None

    out0 = jnp.zeros((len(ks), top), S.dtype)
    (_, out), _ = jax.lax.scan(body, (logspace.init(jnp.eye(d, dtype=S.dtype)), out0), jnp.arange(T), reverse=True)
    return out


@per_example
def _sv_diag(model, xs, S, ks, top):
    la, ph = log_diagonals(model, xs, S)
    L = logspace.diag_log_abs(logspace.diag_suffix(la, ph))[jnp.asarray(ks)]  # (len(ks), n)
    return _top_desc(_state_logs(model, L), top) / LN10


@functools.partial(jax.jit, static_argnames=("batched", "ks", "top"))
def _singular_values(model, xs, S, batched, ks, top):
    f = _sv_diag if is_diagonal(model) else _sv_dense
    return f(model, xs, S, ks, top, batched=batched)


def singular_values(
    model: Any, xs: ArrayLike, state0: Any = None, *, ks: Iterable[int] | None = None, top_k: int | None = None
) -> Spectra:
    """log10 singular values of ``∂S_T/∂S_k`` for the start indices ``ks`` (default: log-spaced lags).

    ``top_k`` keeps only the largest ones. One SVD per requested k (not per step).
    """
    plan_stage("singular_values", model, xs)
    pxs, S, batched = prepare(model, xs, state0)
    T, d = pxs.shape[-2], S.shape[-1]
    ks = default_ks(T) if ks is None else np.asarray(sorted(set(int(k) for k in ks)))
    if ks.size == 0 or ks.min() < 0 or ks.max() >= T:
        raise ConfigError(f"ks={ks.tolist()!r} is not allowed: start indices must lie in [0, T) with T={T}")
    top = d if top_k is None else int(top_k)
    if not 1 <= top <= d:
        raise ConfigError(f"top_k={top_k!r} is not allowed: expected 1..{d}")
    out = _singular_values(model, pxs, S, batched, tuple(int(k) for k in ks), top)
    return Spectra(ks=ks, log10_sv=out, length=int(T))


@functools.partial(jax.jit, static_argnames=("batched",))
def _step_sv(model, xs, S, ts, batched):
    def one(model, xs, S):
        if is_diagonal(model):  # singular values of diag(a_t): the sorted |a_t|
            la = _state_logs(model, log_diagonals(model, xs, S)[0][ts])
            return _top_desc(la, la.shape[-1]) / LN10
        J = jax.vmap(lambda t: step_jac(model, xs[t], S[t], t)[0])(ts)
        return jnp.log10(jnp.linalg.svd(J, compute_uv=False))

    return per_example(one)(model, xs, S, batched=batched)


def step_singular_values(
    model: Any, xs: ArrayLike, state0: Any = None, *, steps: ArrayLike | None = None
) -> tuple[np.ndarray, jax.Array]:
    """log10 singular values of the one-step Jacobians ``J[t]`` at ``steps`` (default all t):
    ``(…, len(steps), d)``."""
    plan_stage("step_singular_values", model, xs, steps=None if steps is None else int(np.size(steps)))
    pxs, S, batched = prepare(model, xs, state0)
    T = pxs.shape[-2]
    ts = np.arange(T) if steps is None else np.asarray(steps)
    if ts.size == 0 or ts.min() < 0 or ts.max() >= T:
        raise ConfigError(f"steps must lie in [0, T) with T={T}")
    return ts, _step_sv(model, pxs, S, jnp.asarray(ts), batched)
