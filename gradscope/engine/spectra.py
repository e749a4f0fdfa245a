"""Singular-value and Lyapunov spectra.

* `singular_values`: the full spectrum (or top k) of ``∂S_T/∂S_k`` at chosen lags, as log10, from the
  log-scaled running product (exact up to float rounding; no overflow).
* `step_singular_values`: spectra of the one-step Jacobians ``J[t]``.
* `lyapunov_spectrum`: Benettin's QR method (Engelken et al. 2020; Vogt et al. 2022): propagate an
  orthonormal frame ``Q ← qr(J[t] Q)`` and average ``log|diag R|`` — natural log per step. The frame
  starts as the first k columns of the identity. Diagonal models are exact: the exponents are the
  per-unit means of ``log|J[t]_ii|``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gradscope._errors import ConfigError
from gradscope.engine._prep import LN10, is_diagonal, per_example, prepare, step_diag, step_jac
from gradscope.engine.products import _renorm, kahan_add


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


@per_example
def _lyap_diag(model, xs, S, k, warmup):
    T = xs.shape[0]
    dg = jax.vmap(lambda x, s, t: step_diag(model, x, s, t))(xs, S[:-1], jnp.arange(T))
    return jnp.cumsum(jnp.log(jnp.abs(dg[warmup:, :k])), axis=0)


@functools.partial(jax.jit, static_argnames=("batched", "k", "warmup", "diag"))
def _lyapunov(model, xs, S, batched, k, warmup, diag):
    f = _lyap_diag if diag else _lyap_dense
    accs = f(model, xs, S, k, warmup, batched=batched)
    steps = jnp.arange(1, accs.shape[-2] + 1, dtype=accs.dtype)[:, None]
    trace = -jnp.sort(-(accs / steps), axis=-1)
    return trace[..., -1, :], trace


def lyapunov_spectrum(model, xs, state0=None, k: int | None = None, warmup: int = 0) -> Lyapunov:
    """The k largest Lyapunov exponents (default all d) of the state map along ``xs``, averaged over the
    steps after ``warmup``; natural log per step."""
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
    def lags(self):
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
        M, sc, out = c
        J = step_jac(model, xs[k], S[k], k)[0]
        M, ls = _renorm(M @ J)
        sc = kahan_add(sc, ls)
        s = sc[0]

        def record(out):
            sv = jnp.linalg.svd(M, compute_uv=False)[:top]
            return out.at[pos[k]].set(jnp.log10(sv) + s / LN10)

        out = jax.lax.cond(sel[k], record, lambda o: o, out)
        return (M, sc, out), None

    out0 = jnp.zeros((len(ks), top), S.dtype)
    (_, _, out), _ = jax.lax.scan(body, (jnp.eye(d, dtype=S.dtype), (jnp.zeros((), S.dtype), jnp.zeros((), S.dtype)), out0),
                                  jnp.arange(T), reverse=True)
    return out


@functools.partial(jax.jit, static_argnames=("batched", "ks", "top"))
def _singular_values(model, xs, S, batched, ks, top):
    return _sv_dense(model, xs, S, ks, top, batched=batched)


def singular_values(model, xs, state0=None, *, ks=None, top_k: int | None = None) -> Spectra:
    """log10 singular values of ``∂S_T/∂S_k`` for the start indices ``ks`` (default: log-spaced lags).

    ``top_k`` keeps only the largest ones. One SVD per requested k (not per step).
    """
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
        J = jax.vmap(lambda t: step_jac(model, xs[t], S[t], t)[0])(ts)
        return jnp.log10(jnp.linalg.svd(J, compute_uv=False))

    return per_example(one)(model, xs, S, batched=batched)


def step_singular_values(model, xs, state0=None, *, steps=None):
    """log10 singular values of the one-step Jacobians ``J[t]`` at ``steps`` (default all t):
    ``(…, len(steps), d)``."""
    pxs, S, batched = prepare(model, xs, state0)
    T = pxs.shape[-2]
    ts = np.arange(T) if steps is None else np.asarray(steps)
    if ts.size == 0 or ts.min() < 0 or ts.max() >= T:
        raise ConfigError(f"steps must lie in [0, T) with T={T}")
    return ts, _step_sv(model, pxs, S, jnp.asarray(ts), batched)
