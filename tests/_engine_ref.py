"""Independent oracles for the engine tests: autodiff of the unrolled map, NumPy norms.

Nothing here uses the engine: states come from `rollout`, one-step maps from the model's ``step``,
derivatives from `jax.jacrev` / `jax.jacfwd`, norms from NumPy in float64.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gradscope._rollout import rollout
from gradscope.cells import make
from gradscope.cells._base import autodiff_jacobians, flatten_state, unflatten_state


def build(name, m=3, n=4, seed=0, dtype=jnp.float64, **opts):
    """A registered cell with float64 weights; BN cells get random per-step statistics so that the
    time index matters."""
    cell = make(name, m, n, key=jax.random.key(seed), dtype=dtype, **opts)
    return randomise_stats(cell, seed)


def randomise_stats(cell, seed=0):
    rep = {}
    rng = np.random.default_rng(seed + 100)
    for f in dataclasses.fields(cell):
        v = getattr(cell, f.name)
        if f.name.startswith("mean_"):
            rep[f.name] = jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype)
        elif f.name.startswith("var_"):
            rep[f.name] = jnp.asarray(rng.uniform(0.5, 2.0, v.shape), v.dtype)
    return dataclasses.replace(cell, **rep) if rep else cell


def inputs(T, m, seed=1, B=None, scale=1.0):
    rng = np.random.default_rng(seed)
    shape = (T, m) if B is None else (B, T, m)
    return scale * rng.normal(size=shape)


def flat_states(model, xs, state0=None):
    """``(prepared xs (T, m'), S_0..S_T (T+1, d))`` from `rollout` (one sequence)."""
    tr = rollout(model, xs, state0)
    return model.prepare_inputs(jnp.asarray(xs, model.dtype)), tr.flat


def unrolled(model, pxs, k, t):
    """The map S_k ↦ S_t of the flat state (steps k..t−1)."""

    def body(s, xj):
        x, j = xj
        return flatten_state(model.step(x, unflatten_state(model, s), j)[0]), None

    def f(s):
        # a scan over the steps (one traced step body: fast to compile); autodiff goes through it
        return jax.lax.scan(body, s, (pxs[k:t], jnp.arange(k, t)))[0]

    return f


def jacrev_product(model, pxs, S, k, t):
    """``∂S_t/∂S_k`` by `jax.jacrev` of the unrolled map (float64 NumPy)."""
    d = S.shape[-1]
    if t == k:
        return np.eye(d)
    return np.asarray(_jacrev(model, pxs, S[k], k, t), np.float64)


@functools.partial(jax.jit, static_argnames=("k", "t"))
def _jacrev(model, pxs, s, k, t):
    return jax.jacrev(unrolled(model, pxs, k, t))(s)


def oracle(model, xs, state0=None):
    """Everything by autodiff in ONE compiled function (compile time dominates at these sizes):

    * ``S``: the flat states S_0..S_T of a plain scan of ``model.step`` (no engine code);
    * ``P[t, k] = ∂S_t/∂S_k`` for t = 0..T, k = 0..T−1 from one `jax.jacrev`: the scan adds a
      perturbation δ_k to S_k before step k, and ``∂S_t/∂δ_k = ∂S_t/∂S_k`` (zero for k ≥ t);
    * ``J[t], Jx[t]``: one-step Jacobians by `jax.jacfwd` of the step (`autodiff_jacobians`).
    """
    pxs = model.prepare_inputs(jnp.asarray(xs, model.dtype))
    if state0 is None:
        s0 = jnp.zeros((model.state_size,), model.dtype)
    else:
        s0 = flatten_state(tuple(jnp.asarray(b, model.dtype) for b in state0))
    S, P, J, Jx = (np.asarray(a, np.float64) for a in _oracle(model, pxs, s0))
    P = np.transpose(P, (0, 2, 1, 3))  # (T, d, T, d) [t−1, :, k, :] → [t−1, k]
    P = np.concatenate([np.zeros_like(P[:1]), P], axis=0)
    return pxs, S, P, J, Jx


@jax.jit
def _oracle(model, pxs, s0):
    T, d = pxs.shape[0], s0.shape[0]

    def run(deltas):
        def body(s, xj):
            x, j, dl = xj
            s2 = flatten_state(model.step(x, unflatten_state(model, s + dl), j)[0])
            return s2, s2

        ss = jax.lax.scan(body, s0, (pxs, jnp.arange(T), deltas))[1]
        return ss, ss

    P, ss = jax.jacrev(run, has_aux=True)(jnp.zeros((T, d), s0.dtype))
    S = jnp.concatenate([s0[None], ss], axis=0)
    J, Jx = jax.vmap(lambda x, s, t: autodiff_jacobians(model, x, unflatten_state(model, s), t))(
        pxs, S[:-1], jnp.arange(T)
    )
    return S, P, J, Jx


def log10_spec(M):
    return float(np.log10(np.linalg.norm(M, 2)))


def log10_frob(M):
    return float(np.log10(np.linalg.norm(M)))


def block_ranges(model):
    out, i = [], 0
    for name, n in zip(model.blocks, model.block_sizes):
        out.append((name, i, i + n))
        i += n
    return out


def assert_lag_profile_matches_jacrev(model, T, atol, seed=2):
    """The engine's lag profile (full state and every block pair, spectral and Frobenius) against NumPy norms
    of `oracle`'s jax.jacrev products, for every lag; an exactly zero block must be −∞."""
    from gradscope import engine

    xs = inputs(T, model.input_size, seed=seed)
    lp = engine.lag_profile(model, xs)
    _, _, P, _, _ = oracle(model, xs)
    ranges = {b: (r0, r1) for b, r0, r1 in block_ranges(model)}
    assert lp.length == T and lp.blocks
    for k in range(T):
        Mk = P[T, k]
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(Mk, 2)), atol=atol)
        np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(Mk)), atol=atol)
        for key, v in lp.blocks.items():  # "b→a" is ∂S_T[a]/∂S_k[b]
            src, dst = key.split("→")
            sub = Mk[slice(*ranges[dst]), slice(*ranges[src])]
            for norm, ord_ in (("log10_spectral", 2), ("log10_frobenius", None)):
                want = np.log10(np.linalg.norm(sub, ord_)) if np.any(sub) else -np.inf
                np.testing.assert_allclose(float(v[norm][k]), want, atol=atol, err_msg=f"{key} k={k}")
