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
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.typing import ArrayLike

from gradscope._errors import ConfigError
from gradscope.engine import _benettin, logspace
from gradscope.engine._blas import on_one_thread
from gradscope.engine._exported import cached_program
from gradscope.engine._memory import plan_stage
from gradscope.engine._prep import (
    LN10,
    engine_precision,
    is_diagonal,
    jac_route,
    log_diagonals,
    model_route,
    per_example,
    prepare,
    step_jac,
    structure,
)
from gradscope.engine.jacobians import TrajectorySteps, host_chunks


@dataclasses.dataclass(frozen=True)
class Lyapunov:
    """``exponents`` (…, k) sorted descending, nats per step; ``trace`` (…, T−warmup, k): the running
    estimate after each step (sorted), to judge convergence."""

    exponents: jax.Array
    trace: jax.Array
    warmup: int


def _lyap_dense(jac_at, T, d, dtype, k, warmup):
    """Benettin's recursion over one sequence's step Jacobians ``jac_at(t)``: the running sums of
    ``log|diag R_t|`` after the warm-up."""
    Q0 = jnp.eye(d, k, dtype=dtype)

    def body(c, t):
        Q, acc = c
        Q, R = jnp.linalg.qr(jac_at(t) @ Q)
        lr = jnp.log(jnp.abs(jnp.diagonal(R)))
        acc = acc + jnp.where(t >= warmup, lr, 0.0)
        return (Q, acc), acc

    _, accs = jax.lax.scan(body, (Q0, jnp.zeros((k,), dtype)), jnp.arange(T))
    return accs[warmup:]


_lyap_model = model_route(_lyap_dense)
_lyap_jac = jac_route(_lyap_dense)


def _running_means(accs, k, xp: Any = jnp):
    """``(exponents, trace)`` from the running sums ``accs`` (…, T', k′): the means after each step, the k
    largest sorted descending. ``xp=np`` for the host's sums (`_lyapunov_host`): no program to compile."""
    steps = xp.arange(1, accs.shape[-2] + 1, dtype=accs.dtype)[:, None]
    trace = _top_desc(accs / steps, k, xp)
    return trace[..., -1, :], trace


def _state_logs(model, la):
    """Per-unit log-magnitudes ``(…, n)`` → one per singular value of the state ``(…, d)``: a complex unit
    twice (its 2 × 2 block ``|λ| R(arg λ)`` has both singular values |λ|)."""
    return jnp.concatenate([la, la], -1) if structure(model) == "complex-diagonal" else la


def _top_desc(x, k, xp: Any = jnp):
    """The k largest along the last axis, descending (−inf sorts last; NaN last, in NumPy as in JAX)."""
    return -xp.sort(-x, axis=-1)[..., :k]


@per_example
def _lyap_diag(model, xs, S, k, warmup):
    la = _state_logs(model, log_diagonals(model, xs, S)[0])
    return jnp.cumsum(la[warmup:], axis=0)


@cached_program(static_argnames=("batched", "k", "warmup", "diag"))
def _lyapunov(model, xs, S, batched, k, warmup, diag):
    """``diag``: the exact fast path (the model must be `is_diagonal`): running means of every unit's
    ``log|a|``, of which the k largest are kept at each step; dense: QR with a k-column frame."""
    f = _lyap_diag if diag else _lyap_model
    return _running_means(f(model, xs, S, k, warmup, batched=batched), k)


@cached_program(static_argnames=("batched", "k", "warmup"))
def _lyapunov_of(J, *, batched, k, warmup):
    # keyed by shapes alone, not by the model: dense models of one state size share the program
    return _running_means(_lyap_jac(J, batched=batched, k=k, warmup=warmup), k)


def _on_host(a: Any) -> bool:
    """Whether the Benettin recursion runs on the host's LAPACK (`gradscope.engine._benettin`) for step
    Jacobians like ``a`` (the Jacobians, or the states they share a dtype with): computed (not traced), real,
    in CPU memory. Called before `on_one_thread`: `_benettin.available` loads SciPy's LAPACK, which the
    one-thread BLAS limit can only reach once loaded (not so, two workers ran 2.5× slower)."""
    if isinstance(a, Tracer) or not _benettin.available(a.dtype):
        return False
    devices = getattr(a, "devices", None)
    return devices is None or all(dev.platform == "cpu" for dev in devices())


def _lyapunov_host(chunks, *, T, k, warmup, batched):
    """`_lyapunov_of` on the host: the running sums from LAPACK over the step Jacobians ``chunks`` (B, L, d, d)
    (`gradscope.engine._benettin`), then the same sorted running means, as JAX arrays."""
    accs = _benettin.log_r_sums(chunks, T, k, warmup)
    ex, trace = _running_means(accs if batched else accs[0], k, np)
    return jax.device_put(ex), jax.device_put(trace)


def lyapunov_spectrum(model: Any, xs: ArrayLike, state0: Any = None, k: int | None = None, warmup: int = 0) -> Lyapunov:
    """The k largest Lyapunov exponents (default all d) of the state map along ``xs``, averaged over the
    steps after ``warmup``; natural log per step. Exact for diagonal and complex-diagonal models.

    A dense model's QR recursion runs on the host's LAPACK on the CPU, one sequence per CPU, its step
    Jacobians made in chunks (`gradscope.engine._benettin`); in a traced call and on other backends a JAX
    scan recomputes each J_t where it multiplies it."""
    plan_stage("lyapunov", model, xs, k=k)  # before the rollout: refuse what would not fit
    pxs, S, batched = prepare(model, xs, state0)
    k = _check_lyapunov(pxs, S, k, warmup)
    diag = is_diagonal(model)
    # one QR per step: one BLAS thread is faster (`gradscope.engine._blas`)
    if not diag and _on_host(S):  # S is traced too when the model is
        chunks = host_chunks(model, pxs, S, batched)  # made as the host asks for them
        ex, trace = on_one_thread(
            S.shape[-1], _lyapunov_host, chunks, T=pxs.shape[-2], k=k, warmup=warmup, batched=batched
        )
    else:
        ex, trace = on_one_thread(S.shape[-1], _lyapunov, model, pxs, S, batched=batched, k=k, warmup=warmup, diag=diag)
    return Lyapunov(ex, trace, warmup)


def _check_lyapunov(xs, S, k, warmup) -> int:
    T, d = xs.shape[-2], S.shape[-1]
    k = d if k is None else k
    if not (isinstance(k, int) and 1 <= k <= d):
        raise ConfigError(f"k={k!r} is not allowed: expected an integer between 1 and the state size {d}")
    if not (isinstance(warmup, int) and 0 <= warmup < T):
        raise ConfigError(f"warmup={warmup!r} is not allowed: expected an integer in [0, T) with T={T}")
    return k


def lyapunov_spectrum_of(model: Any, steps: TrajectorySteps, k: int | None = None, warmup: int = 0) -> Lyapunov:
    """`lyapunov_spectrum` from a rollout whose step Jacobians are materialised (`trajectory_steps`)."""
    k = _check_lyapunov(steps.xs, steps.S, k, warmup)
    if is_diagonal(model):
        ex, trace = _lyapunov(model, steps.xs, steps.S, batched=steps.batched, k=k, warmup=warmup, diag=True)
    else:
        d, J, batched = steps.S.shape[-1], steps.jac, steps.batched
        if _on_host(J):
            chunks = [np.asarray(J) if batched else np.asarray(J)[None]]
            ex, trace = on_one_thread(d, _lyapunov_host, chunks, T=J.shape[-3], k=k, warmup=warmup, batched=batched)
        else:
            ex, trace = on_one_thread(d, _lyapunov_of, J, batched=batched, k=k, warmup=warmup)
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


def _sv_dense(jac_at, T, d, dtype, ks, top):
    """log10 singular values of ``∂S_T/∂S_k`` at the start indices ``ks`` of one sequence's step Jacobians
    ``jac_at(k)``."""
    sel = jnp.zeros((T,), bool).at[jnp.asarray(ks)].set(True)
    pos = jnp.zeros((T,), jnp.int32).at[jnp.asarray(ks)].set(jnp.arange(len(ks), dtype=jnp.int32))

    def body(c, k):
        P, out = c
        P = logspace.update(P, jac_at(k))

        def record(out):
            return out.at[pos[k]].set(logspace.log10_singular_values(P)[:top])

        out = jax.lax.cond(sel[k], record, lambda o: o, out)
        return (P, out), None

    out0 = jnp.zeros((len(ks), top), dtype)
    (_, out), _ = jax.lax.scan(body, (logspace.init(jnp.eye(d, dtype=dtype)), out0), jnp.arange(T), reverse=True)
    return out


_sv_model = model_route(_sv_dense)
_sv_jac = jac_route(_sv_dense)


@cached_program(static_argnames=("batched", "ks", "top"))
def _singular_values_of(J, *, batched, ks, top):
    return _sv_jac(J, batched=batched, ks=ks, top=top)


@per_example
def _sv_diag(model, xs, S, ks, top):
    la, ph = log_diagonals(model, xs, S)
    L = logspace.diag_log_abs(logspace.diag_suffix(la, ph))[jnp.asarray(ks)]  # (len(ks), n)
    return _top_desc(_state_logs(model, L), top) / LN10


@cached_program(static_argnames=("batched", "ks", "top"))
def _singular_values(model, xs, S, batched, ks, top):
    f = _sv_diag if is_diagonal(model) else _sv_model
    return f(model, xs, S, ks, top, batched=batched)


def singular_values(
    model: Any, xs: ArrayLike, state0: Any = None, *, ks: Iterable[int] | None = None, top_k: int | None = None
) -> Spectra:
    """log10 singular values of ``∂S_T/∂S_k`` for the start indices ``ks`` (default: log-spaced lags).

    ``top_k`` keeps only the largest ones. One SVD per requested k (not per step).
    """
    plan_stage("singular_values", model, xs)
    pxs, S, batched = prepare(model, xs, state0)
    ks, top = _check_sv(pxs, S, ks, top_k)
    out = _singular_values(model, pxs, S, batched=batched, ks=tuple(int(k) for k in ks), top=top)
    return Spectra(ks=ks, log10_sv=out, length=int(pxs.shape[-2]))


def _check_sv(xs, S, ks, top_k) -> tuple[np.ndarray, int]:
    T, d = xs.shape[-2], S.shape[-1]
    ks = default_ks(T) if ks is None else np.asarray(sorted(set(int(k) for k in ks)))
    if ks.size == 0 or ks.min() < 0 or ks.max() >= T:
        raise ConfigError(f"ks={ks.tolist()!r} is not allowed: start indices must lie in [0, T) with T={T}")
    top = d if top_k is None else int(top_k)
    if not 1 <= top <= d:
        raise ConfigError(f"top_k={top_k!r} is not allowed: expected 1..{d}")
    return ks, top


def singular_values_of(
    model: Any, steps: TrajectorySteps, *, ks: Iterable[int] | None = None, top_k: int | None = None
) -> Spectra:
    """`singular_values` from a rollout whose step Jacobians are materialised (`trajectory_steps`)."""
    ks, top = _check_sv(steps.xs, steps.S, ks, top_k)
    kt = tuple(int(k) for k in ks)
    if is_diagonal(model):
        out = _singular_values(model, steps.xs, steps.S, batched=steps.batched, ks=kt, top=top)
    else:
        out = _singular_values_of(steps.jac, batched=steps.batched, ks=kt, top=top)
    return Spectra(ks=ks, log10_sv=out, length=int(steps.xs.shape[-2]))


def _indices(ts: np.ndarray) -> jax.Array:
    """Step indices on the device by a transfer (``jnp.asarray`` of int64 would compile a conversion)."""
    return jax.device_put(np.asarray(ts, np.int32))


@cached_program(static_argnames=("batched",))
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
    return ts, on_one_thread(S.shape[-1], _step_sv, model, pxs, S, _indices(ts), batched=batched)  # an SVD a step


@cached_program()
def _step_sv_of(J, ts):
    with engine_precision():
        return jnp.log10(jnp.linalg.svd(J[..., ts, :, :], compute_uv=False))


def step_singular_values_of(
    model: Any, steps: TrajectorySteps, *, steps_at: ArrayLike | None = None
) -> tuple[np.ndarray, jax.Array]:
    """`step_singular_values` from a rollout whose step Jacobians are materialised (`trajectory_steps`)."""
    T = steps.xs.shape[-2]
    ts = np.arange(T) if steps_at is None else np.asarray(steps_at)
    if ts.size == 0 or ts.min() < 0 or ts.max() >= T:
        raise ConfigError(f"steps must lie in [0, T) with T={T}")
    if is_diagonal(model):
        return ts, _step_sv(model, steps.xs, steps.S, _indices(ts), batched=steps.batched)
    return ts, on_one_thread(steps.S.shape[-1], _step_sv_of, steps.jac, _indices(ts))
