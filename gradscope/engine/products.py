"""Products of step Jacobians ``∂S_t/∂S_k = J[t−1] ⋯ J[k]`` in log space: lag profiles and triangles.

Overflow-proof: the running product is kept as ``exp(s) · M`` with ``‖M‖_F = 1``; after every
multiplication M is renormalised and the natural-log scale ``s`` accumulated, so a gradient of 1e−300
or 1e+300 is just a number (ecosystem.md §5.1). Spectral norms are found by subspace iteration with
Rayleigh–Ritz, warm-started from the previous lag's singular vectors (the top singular vector of
``∂S_T/∂S_k`` changes slowly with k), iterated to a relative tolerance — no SVD per lag.

Memory: the lag profile holds one ``d × d`` product per sequence and recomputes each step Jacobian
inside the scan, so it never materialises ``T·d²`` numbers. Diagonal models (IndRNN) chain
elementwise: ``log|∂h_T/∂h_k|`` is a reverse cumulative sum, computed in parallel.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from gradscope._errors import ConfigError
from gradscope.engine._memory import BUDGET_FRACTION, available_bytes, require
from gradscope.engine._prep import LN10, is_diagonal, per_example, prepare, step_diag, step_jac

SUBSPACE_RANK = 4
MAX_ITERS = 50
#: blocks up to this size get their spectral norm from an exact SVD; larger ones from subspace iteration
EXACT_MAX = 16


def _tol(dtype):
    return 1e-6 if jnp.dtype(dtype) == jnp.float32 else 1e-12


def top_singular_value(M, V, tol, max_iters=MAX_ITERS, exact=False):
    """Largest singular value of ``M``: ``(σ_max, V')`` with ``V'`` the block to warm-start the next call.

    Matrices of up to ``EXACT_MAX`` rows/columns (or any, with ``exact=True``) get an exact SVD. Larger ones use subspace iteration
    with Rayleigh–Ritz (the Ritz value rises monotonically towards σ_max) from the previous lag's block
    ``V``, stopped when the relative residual of the top Ritz vector is below ``tol``. A warm start can sit exactly on an
    invariant subspace that is no longer the top one (e.g. a diagonal product whose largest entry moves
    to another unit), where iteration would never leave it; so a fixed random block is mixed in first,
    giving every direction a component to grow.
    """
    if exact or max(M.shape) <= EXACT_MAX:
        return jnp.linalg.svd(M, compute_uv=False)[0], V

    G = jax.random.normal(jax.random.key(1), V.shape, V.dtype) / jnp.sqrt(V.shape[0])
    V, _ = jnp.linalg.qr(V + 0.5 * G)
    tiny = jnp.finfo(M.dtype).tiny

    def ritz(V):
        # Rayleigh–Ritz on span(V): top singular triple of M V, and the residual of its right vector
        u, s, vt = jnp.linalg.svd(M @ V, full_matrices=False)
        v = V @ vt[0]
        r = M.T @ (M @ v) - s[0] ** 2 * v
        return s[0], jnp.linalg.norm(r) / jnp.maximum(s[0] ** 2, tiny)

    def body(c):
        V, _, _, it = c
        V2, _ = jnp.linalg.qr(M.T @ (M @ V))
        sig, res = ritz(V2)
        return V2, sig, res, it + 1

    def cond(c):
        # stop on a small residual ‖MᵀMv − σ²v‖/σ²: unlike a small change of σ, it cannot be met while
        # the iteration is still creeping through a cluster of close singular values
        return (c[3] < max_iters) & (c[2] > tol)

    V, sig, _, _ = jax.lax.while_loop(cond, body, body((V, jnp.zeros((), M.dtype), jnp.ones((), M.dtype), 0)))
    return sig, V


def _init_block(d, r, dtype):
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (d, r), dtype))
    return q


def kahan_add(sc, x):
    """Compensated (Kahan) summation step on ``sc = (sum, compensation)``.

    The log-scale of a long product is a sum of T per-step logs; plain float32 accumulation of
    |s| ≈ 10³ loses ~T·ulp(s)/2 (0.01 in log10 over 5000 steps); the compensation keeps it at ~ulp.
    """
    s, c = sc
    y = x - c
    t = s + y
    # an exactly zero product (x = −inf) stays −inf; keep the compensation finite
    return t, jnp.where(jnp.isfinite(t), (t - s) - y, 0.0)


def _renorm(M):
    """``M / ‖M‖_F`` and ``log ‖M‖_F`` (−inf for an exactly zero product, which then stays zero)."""
    f = jnp.linalg.norm(M)
    return M / jnp.where(f > 0, f, 1), jnp.log(f)


def block_pairs(model):
    """(name, row slice, col slice) for the reported block pairs: ``"b→a"`` is ∂S_T[a]/∂S_k[b].

    All pairs for up to 4 blocks; only the diagonal pairs beyond that (deep stacks).
    """
    sl, i = [], 0
    for name, n in zip(model.blocks, model.block_sizes):
        sl.append((name, i, i + n))
        i += n
    if len(sl) <= 4:
        return [(f"{b}→{a}", (ra, rb), (ca, cb)) for (a, ra, rb) in sl for (b, ca, cb) in sl]
    return [(f"{a}→{a}", (r0, r1), (r0, r1)) for (a, r0, r1) in sl]


@dataclasses.dataclass(frozen=True)
class LagProfile:
    """Entry k: log10 norms of ``∂S_T/∂S_k`` (k = 0..T−1, lag T−k); ``blocks`` per block pair."""

    log10_spectral: jax.Array
    log10_frobenius: jax.Array
    blocks: dict
    length: int

    @property
    def lags(self):
        return jnp.arange(self.length, 0, -1)


@per_example
def _lag_dense(model, xs, S, pairs, spectral):
    T, d = xs.shape[0], S.shape[-1]
    dtype = S.dtype
    tol = _tol(dtype)
    r = min(SUBSPACE_RANK, d)
    V0 = _init_block(d, r, dtype)
    pV0 = [_init_block(c1 - c0, min(SUBSPACE_RANK, c1 - c0), dtype) for _, _, (c0, c1) in pairs]

    def body(carry, k):
        M, sc, V, pV = carry
        J = step_jac(model, xs[k], S[k], k)[0]
        M, ls = _renorm(M @ J)
        sc = kahan_add(sc, ls)
        s = sc[0]
        frob = s / LN10
        if spectral:
            sig, V = top_singular_value(M, V, tol, exact=spectral == "exact")
            spec = jnp.log10(sig) + frob
        else:
            spec = jnp.full_like(frob, jnp.nan)
        pf, ps, newpV = [], [], []
        for (_, (r0, r1), (c0, c1)), v in zip(pairs, pV):
            if (r0, r1, c0, c1) == (0, d, 0, d):  # a one-block model's h→h is the whole state: same norms
                pf.append(frob)
                ps.append(spec)
            else:
                sub = M[r0:r1, c0:c1]
                pf.append(jnp.log10(jnp.linalg.norm(sub)) + frob)
                if spectral:
                    sig, v = top_singular_value(sub, v, tol, exact=spectral == "exact")
                    ps.append(jnp.log10(sig) + frob)
                else:
                    ps.append(spec)
            newpV.append(v)
        return (M, sc, V, newpV), (spec, frob, jnp.stack(pf) if pf else frob[None], jnp.stack(ps) if ps else frob[None])

    sc0 = (jnp.asarray(0.5 * math.log(d), dtype), jnp.zeros((), dtype))
    carry0 = (jnp.eye(d, dtype=dtype) / math.sqrt(d), sc0, V0, pV0)
    _, (spec, frob, pf, ps) = jax.lax.scan(body, carry0, jnp.arange(T), reverse=True)
    return spec, frob, pf, ps  # (T, pairs)


@per_example
def _lag_diag(model, xs, S):
    T = xs.shape[0]
    dg = jax.vmap(lambda x, s, t: step_diag(model, x, s, t))(xs, S[:-1], jnp.arange(T))
    la = jnp.log(jnp.abs(dg))  # (T, d); −inf where a unit is switched off (an exact zero)
    L = jnp.cumsum(la[::-1], axis=0)[::-1]  # L[k] = Σ_{j≥k} log|d_j| = log|∂h_T/∂h_k| per unit
    spec = jnp.max(L, axis=-1) / LN10
    frob = 0.5 * jax.nn.logsumexp(2 * L, axis=-1) / LN10
    return spec, frob


@functools.partial(jax.jit, static_argnames=("batched", "diag", "spectral"))
def _lag_profile(model, xs, S, batched, diag, spectral):
    if diag:
        spec, frob = _lag_diag(model, xs, S, batched=batched)
        return spec, frob, frob[..., None], spec[..., None]
    pairs = block_pairs(model)
    return _lag_dense(model, xs, S, pairs, spectral, batched=batched)


def lag_profile(model, xs, state0=None, *, spectral: bool | str = True) -> LagProfile:
    """log10 spectral and Frobenius norms of ``∂S_T/∂S_k`` for k = 0..T−1, for the full state and per
    block pair (``"h→h"``, ``"c→h"`` = ∂h_T/∂c_k, ...). Batched inputs give a leading B axis.

    Spectral norms: exact SVD for blocks up to ``EXACT_MAX`` wide, warm-started subspace iteration above
    (relative residual ≤ 1e-6 in float32, 1e-12 in float64, at most 50 iterations per lag; where the top
    singular values agree to ~1e-4 the estimate can sit up to ~1e-3 log10 low). ``spectral="exact"``
    takes an SVD at every lag instead (slower); ``spectral=False`` skips them (Frobenius only)."""
    if spectral not in (True, False, "exact"):
        raise ConfigError(f"spectral={spectral!r} is not allowed: use True, False or 'exact'")
    pxs, S, batched = prepare(model, xs, state0)
    diag = is_diagonal(model)
    spec, frob, pf, ps = _lag_profile(model, pxs, S, batched, diag, spectral)
    names = [f"{b}→{b}" for b in model.blocks] if diag else [p[0] for p in block_pairs(model)]
    blocks = {
        n: {"log10_spectral": ps[..., i], "log10_frobenius": pf[..., i]} for i, n in enumerate(names)
    }
    return LagProfile(spec, frob, blocks, int(pxs.shape[-2]))


@dataclasses.dataclass(frozen=True)
class Triangle:
    """``log10_frobenius[t, k] = log10 ‖∂S_t/∂S_k‖_F`` for 0 ≤ k ≤ t ≤ T; NaN above the diagonal."""

    log10_frobenius: jax.Array
    log10_spectral: jax.Array | None


@per_example
def _triangle_one(model, xs, S, chunk, spectral):
    T, d = xs.shape[0], S.shape[-1]
    dtype = S.dtype
    C = chunk
    nc = -(-T // C)
    width = nc * C + 1
    out0 = jnp.full((2, T + 1, width), jnp.nan, dtype)
    idx = jnp.arange(T + 1)
    out0 = out0.at[:, idx, idx].set(jnp.asarray([0.5 * math.log10(d), 0.0], dtype)[:, None])

    def chunk_body(c, out):
        k0 = c * C

        def t_body(t, carry):
            Q, (ls, lc), out = carry
            J = step_jac(model, xs[t], S[t], t)[0]
            Q = jnp.einsum("ij,cjk->cik", J, Q)
            slot = jnp.arange(C)
            inject = slot == (t - k0)
            Q = jnp.where(inject[:, None, None], J, Q)
            ls, lc = jnp.where(inject, 0.0, ls), jnp.where(inject, 0.0, lc)
            f = jnp.linalg.norm(Q, axis=(1, 2))
            Q = Q / jnp.where(f > 0, f, 1)[:, None, None]
            ls, lc = kahan_add((ls, lc), jnp.log(f))
            live = k0 + slot <= t
            row_f = jnp.where(live, ls / LN10, jnp.nan)
            if spectral:
                row_s = jnp.where(live, jnp.log10(jnp.linalg.norm(Q, ord=2, axis=(1, 2))) + ls / LN10, jnp.nan)
            else:
                row_s = jnp.full_like(row_f, jnp.nan)
            rows = jnp.stack([row_f, row_s])[:, None, :]
            out = jax.lax.dynamic_update_slice(out, rows.astype(dtype), (0, t + 1, k0))
            return Q, (ls, lc), out

        Q0 = jnp.zeros((C, d, d), dtype)
        ls0 = (jnp.full((C,), -jnp.inf, dtype), jnp.zeros((C,), dtype))
        _, _, out = jax.lax.fori_loop(k0, T, t_body, (Q0, ls0, out))
        return out

    out = jax.lax.fori_loop(0, nc, chunk_body, out0)
    # the row writes above cover a chunk's whole width, so they overwrite the diagonal ∂S_t/∂S_t = I
    # of row t with NaN ("not yet started"): put it back
    out = out.at[:, idx, idx].set(jnp.asarray([0.5 * math.log10(d), 0.0], dtype)[:, None])
    return out[:, :, : T + 1]


@functools.partial(jax.jit, static_argnames=("batched", "chunk", "spectral"))
def _triangle(model, xs, S, batched, chunk, spectral):
    return _triangle_one(model, xs, S, chunk, spectral, batched=batched)


def _chunk_size(T, d, batch, itemsize):
    """Slots per chunk: chunks let only products that have started be multiplied (about half the work
    of multiplying all T slots every step); the chunk must also fit the memory budget."""
    budget = min(256 * 2**20, int(BUDGET_FRACTION * available_bytes()))
    slot = batch * d * d * itemsize
    require(slot + 2 * batch * (T + 1) ** 2 * itemsize, "triangle (one product and the (T+1)² output)",
            budget=budget)
    by_mem = max(1, (budget - 2 * batch * (T + 1) ** 2 * itemsize) // slot)
    return int(max(1, min(T, -(-T // 8) if T >= 64 else T, by_mem)))


def triangle(model, xs, state0=None, *, spectral: bool = False, chunk: int | None = None) -> Triangle:
    """``log10 ‖∂S_t/∂S_k‖_F`` for all 0 ≤ k ≤ t ≤ T (shape ``(T+1, T+1)``, NaN above the diagonal);
    spectral norms too with ``spectral=True`` (one SVD per entry: slower)."""
    pxs, S, batched = prepare(model, xs, state0)
    T, d = pxs.shape[-2], S.shape[-1]
    B = pxs.shape[0] if batched else 1
    chunk = chunk or _chunk_size(T, d, B, S.dtype.itemsize)
    out = _triangle(model, pxs, S, batched, int(chunk), spectral)
    return Triangle(out[..., 0, :, :], out[..., 1, :, :] if spectral else None)
