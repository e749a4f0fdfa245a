"""Gradient attribution by lag and by layer × time.

Pascanu et al. (2013, eqs. 3–5) write the gradient of ``E = Σ_t E_t`` as a sum of temporal
contributions::

    ∂E/∂θ = Σ_t Σ_{k≤t} (∂E_t/∂S_t) (∂S_t/∂S_k) (∂⁺S_k/∂θ)

`attribution` groups the terms by lag τ = t − k and returns the norm of each group's parameter
gradient, so one sees that the total gradient need not vanish while its long-range part does. The
groups sum exactly to ``∂E/∂θ``. The vectors ``u = (∂S_t/∂S_k)ᵀ e_t`` are kept renormalised with a
log-scale per row (no overflow). It holds every step Jacobian (O(T·d²)) and costs T² parameter VJPs:
meant for T up to a few hundred.

The loss: by default ``E_t = ⟨v, output(S_t)⟩`` with a fixed random unit vector ``v`` (seeded) at every
step (``readout="every"``) or only at t = T (``readout="last"``); ``cotangents`` overrides it with any
``∂E_t/∂S_t`` of shape ``(T, d)``.

Per layer × time (for stacks): ``‖∂E/∂S_t[block]‖`` for the total back-propagated error
``δ_t = e_t + J[t]ᵀ δ_{t+1}`` — the depth-and-time picture of deep IndRNN / stacked LSTM claims.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradscope._errors import ConfigError
from gradscope.cells._base import flatten_state, unflatten_state
from gradscope.engine._memory import plan_stage
from gradscope.engine._prep import LN10, engine_precision, prepare, step_jac


@dataclasses.dataclass(frozen=True)
class Attribution:
    """``log10_by_lag[τ]`` = log10 ‖Σ_{t−k=τ} contribution‖₂ over all parameters; ``log10_total`` =
    log10 ‖∂E/∂θ‖₂; ``log10_block_time[t, b]`` = log10 ‖∂E/∂S_t[block b]‖ for t = 0..T."""

    log10_by_lag: jax.Array
    log10_total: jax.Array
    log10_block_time: jax.Array
    blocks: tuple


def output_cotangents(model: Any, T: int, readout: str, key: jax.Array, dtype: Any) -> jax.Array:
    """``e_t = ∂E_t/∂S_t`` for the default loss ``E_t = ⟨v, output(S_t)⟩``: ``(T, d)``."""
    if readout not in ("every", "last"):
        raise ConfigError(f"readout={readout!r} is not allowed: use 'every' or 'last'")
    d = model.state_size

    def out_of(s):
        return model.output(unflatten_state(model, s))

    n_out = out_of(jnp.zeros((d,), dtype)).shape[0]
    v = jax.random.normal(key, (n_out,), dtype)
    v = v / jnp.linalg.norm(v)
    with engine_precision():  # the vdot's transpose would round v on a GPU
        e = jax.grad(lambda s: jnp.vdot(v, out_of(s)))(jnp.zeros((d,), dtype))
    es = jnp.broadcast_to(e, (T, d))
    if readout == "last":
        es = es * (jnp.arange(T) == T - 1)[:, None].astype(dtype)
    return es


def _attr(model, xs, S, es):
    T, d = xs.shape[0], S.shape[-1]
    dtype = S.dtype
    ts = jnp.arange(T)
    J = jax.vmap(lambda x, s, t: step_jac(model, x, s, t)[0])(xs, S[:-1], ts)  # (T, d, d)

    def step_of(m, x, s, t):
        return flatten_state(m.step(x, unflatten_state(m, s), t)[0])

    def param_grad(cot_rows, j):
        # Σ_i ∂⁺S_{j_i+1}/∂θ ᵀ cot_i  as a flat parameter vector
        def f(m):
            out = jax.vmap(lambda jj: step_of(m, xs[jj], S[jj], jj))(j)
            return jnp.sum(out * cot_rows)

        g = jax.grad(f)(model)
        return jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(g)])

    # U[i] = u_{t,k} for t = i+1, stored as (unit vector, natural-log scale)
    def norm_rows(U):
        n = jnp.linalg.norm(U, axis=-1)
        return U / jnp.where(n > 0, n, 1)[:, None], jnp.log(n)

    U0, l0 = norm_rows(es)

    def body(c, tau):
        U, l = c
        j = ts - tau
        valid = j >= 0
        jc = jnp.clip(j, 0, T - 1)
        m = jnp.max(jnp.where(valid, l, -jnp.inf))
        m = jnp.where(jnp.isfinite(m), m, 0.0)
        w = jnp.where(valid, jnp.exp(l - m), 0.0)
        g = param_grad(U * w[:, None], jc)
        gnorm_log = jnp.log(jnp.linalg.norm(g)) + m
        U2 = jnp.einsum("ij,ijk->ik", U, J[jc])  # u_{t,k-1}ᵀ = u_{t,k}ᵀ J[k-1]
        U2, dl = norm_rows(U2)
        return (U2, l + dl), (gnorm_log / LN10, g * jnp.exp(m))

    (_, _), (by_lag, gs_) = jax.lax.scan(body, (U0, l0), ts)
    total = jnp.log10(jnp.linalg.norm(jnp.sum(gs_, axis=0)))

    # total back-propagated error per step δ_t = e_t + J[t]ᵀ δ_{t+1}, renormalised
    def rev(c, t):
        dvec, s = c  # δ_{t+1} = exp(s) · dvec
        # δ_t over S_t: contribution of e at S_t (index t−1 in es, for t ≥ 1) + J[t]ᵀ δ_{t+1}
        prop = J[t].T @ dvec
        e = jnp.where(t >= 1, es[jnp.maximum(t - 1, 0)], jnp.zeros((d,), dtype))
        # combine exp(s)·prop + e in log space
        mx = jnp.maximum(s, 0.0)
        v = jnp.exp(s - mx) * prop + jnp.exp(-mx) * e
        n = jnp.linalg.norm(v)
        v = v / jnp.where(n > 0, n, 1)
        s2 = mx + jnp.log(n)
        return (v, s2), (v, s2)

    eT, sT = norm_rows(es[-1:])
    (_, _), (vs, ss) = jax.lax.scan(rev, (eT[0], sT[0]), jnp.arange(T - 1, -1, -1))
    vs = jnp.concatenate([vs[::-1], eT], axis=0)  # δ_0..δ_T
    ss = jnp.concatenate([ss[::-1], sT], axis=0)
    return by_lag, total, vs, ss


@functools.partial(jax.jit, static_argnames=("batched",))
def _attribution(model, xs, S, es, batched):
    with engine_precision():
        if batched:  # the cotangents may differ per sequence
            return jax.vmap(lambda x, s, e: _attr(model, x, s, e))(xs, S, es)
        return _attr(model, xs, S, es)


def attribution(
    model: Any,
    xs: ArrayLike,
    state0: Any = None,
    *,
    readout: str = "every",
    key: jax.Array | None = None,
    cotangents: ArrayLike | None = None,
) -> Attribution:
    """Split ``∂E/∂θ`` by lag τ = t − k and report per-block gradient norms over time (see module doc)."""
    plan_stage("attribution", model, xs)  # before the rollout: refuse what would not fit
    pxs, S, batched = prepare(model, xs, state0)
    T = pxs.shape[-2]
    key = jax.random.key(0) if key is None else key
    es = output_cotangents(model, T, readout, key, S.dtype) if cotangents is None else jnp.asarray(cotangents, S.dtype)
    if es.shape[-2:] != (T, model.state_size):
        raise ConfigError(f"cotangents has shape {es.shape}: expected (T, d) = ({T}, {model.state_size})")
    if batched and es.ndim == 2:
        es = jnp.broadcast_to(es, (pxs.shape[0],) + es.shape)
    by_lag, total, vs, ss = _attribution(model, pxs, S, es, batched)
    # per-block norms of δ_t (in log10, adding the scale)
    edges = np.cumsum([0] + list(model.block_sizes))
    blocks = [jnp.linalg.norm(vs[..., a:b], axis=-1) for a, b in zip(edges[:-1], edges[1:])]
    bt = jnp.log10(jnp.stack(blocks, axis=-1)) + (ss / LN10)[..., None]
    return Attribution(by_lag, total, bt, tuple(model.blocks))
