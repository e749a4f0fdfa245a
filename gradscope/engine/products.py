"""Products of step Jacobians ``∂S_t/∂S_k = J[t−1] ⋯ J[k]`` in log space: lag profiles and triangles.

Overflow-proof: the running product is a `gradscope.engine.logspace.LogProduct`, ``exp(s) · M`` with
``‖M‖_F = 1``, renormalised after every multiplication with the log-scale ``s`` summed with compensation,
so a gradient of 1e−300 or 1e+300 is just a number (0.6^200 ≈ 4e−45 already lies below float32's smallest
normal number, 1.2e−38). Spectral norms are found by subspace iteration with Rayleigh–Ritz, warm-started
from the previous lag's singular vectors (the top singular vector of ``∂S_T/∂S_k`` changes slowly with k),
iterated to a relative tolerance — no SVD per lag.

Memory: the lag profile holds one ``d × d`` product per sequence and recomputes each step Jacobian
inside the scan, so it never materialises ``T·d²`` numbers.

Diagonal fast path (models declaring ``structure = "diagonal"`` or ``"complex-diagonal"``): no d × d
matrix is formed. ``∂S_T/∂S_k`` is per unit ``∏_{j≥k} a_j``; its log-magnitudes (and, for complex
multipliers, its phases) for all k come from one suffix scan in O(T·d) (`logspace.diag_suffix`). For a
real diagonal the spectral norm is ``max_n |∏ a_n|`` and the Frobenius norm ``(Σ_n |∏ a_n|²)^{1/2}``. For
a complex diagonal on ``S = [re, im]`` the product is per unit ``|P_n| R(φ_n)`` with ``P_n = ∏ λ_n`` and
``φ_n = Σ arg λ_n``; so the full state has spectral norm ``max |P_n|`` and Frobenius norm
``(2 Σ |P_n|²)^{1/2}``, and the blocks are ``∂re_T/∂re_k = ∂im_T/∂im_k = diag(|P| cos φ)``,
``∂im_T/∂re_k = −∂re_T/∂im_k = diag(|P| sin φ)`` — exact, not estimated.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradscope._errors import ConfigError
from gradscope.engine import logspace
from gradscope.engine._exported import cached_program
from gradscope.engine._memory import BUDGET_FRACTION, available_bytes, plan_stage, require
from gradscope.engine._prep import (
    LN10,
    is_diagonal,
    jac_route,
    log_diagonals,
    model_route,
    per_example,
    prepare,
    structure,
    unstack,
)
from gradscope.engine.jacobians import TrajectorySteps

#: columns of the subspace iteration. 8 converge in fewer iterations (an LSTM with n = 64: 2.0 per lag on
#: average instead of 2.8) but then the 4-device CPU sweep of tests/test_deadlock.py hangs inside jaxlib's
#: batched LAPACK kernels (jaxlib 0.10, 2026-12-06), as a batch of 128 once did (gradscope/__init__.py)
SUBSPACE_RANK = 4
MAX_ITERS = 50
#: blocks up to this size get their spectral norm from an exact SVD; larger ones from subspace iteration
EXACT_MAX = 16
#: a triangle chunk's first steps run in this many phases of growing width (`_triangle_dense`)
_PHASES = 5


def _tol(dtype):
    """The relative residual ρ = ‖MᵀMv − θv‖/θ at which `top_singular_value` stops. For the symmetric MᵀM and
    a unit v, some eigenvalue λ lies within ρθ of θ (write v = Σ cᵢuᵢ in its eigenvectors: ‖r‖² =
    Σ cᵢ²(λᵢ − θ)² ≥ minᵢ (λᵢ − θ)²), so σ = √λ is within ρ/2 relative of √θ: in float32, ρ = 1e-4 bounds the
    error of a log10 spectral norm by 2.2e-5 (and the Ritz value's actual error is second order, ρ²θ/gap:
    on the LSTM of benchmarks/bench_engine.py every lag agreed with an SVD to float32 rounding, 4e-6 log10,
    at 1e-3, 1e-4 and 1e-6 alike, while 1e-4 took 0.113 s instead of 0.130 s for its 200 lags)."""
    return 1e-4 if jnp.dtype(dtype) == jnp.float32 else 1e-12


def top_singular_value(
    M: jax.Array, V: jax.Array, tol: float, max_iters: int = MAX_ITERS, exact: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Largest singular value of ``M``: ``(σ_max, V')`` with ``V'`` the block to warm-start the next call.

    Matrices of up to ``EXACT_MAX`` rows/columns (or any, with ``exact=True``) get an exact SVD. Larger ones
    use subspace iteration with Rayleigh–Ritz (the Ritz value rises monotonically towards σ_max) from the
    previous lag's block ``V``, stopped when the relative residual of the top Ritz vector is below ``tol``.
    A warm start can sit exactly on an invariant subspace that is no longer the top one (e.g. a diagonal
    product whose largest entry moves to another unit), where iteration would never leave it; so a fixed
    random block is mixed in first, giving every direction a component to grow.
    """
    if exact or max(M.shape) <= EXACT_MAX:
        return jnp.linalg.svd(M, compute_uv=False)[0], V

    G = _mixing_block(V.shape, V.dtype)
    tiny = jnp.finfo(M.dtype).tiny

    def body(c):
        W, _, _, _, it = c
        V, _ = jnp.linalg.qr(W)
        # Rayleigh–Ritz on span(V): the top eigenpair of the r × r matrix VᵀMᵀMV = BᵀB gives σ² and the
        # right vector v = V x (an r × r eigh costs less than an SVD of the d × r block B, and σ is the
        # largest singular value: squaring it loses no relative accuracy). C = MᵀB = MᵀMV serves twice:
        # the residual MᵀMv − σ²v = Cx − σ²v, and the next block to orthonormalise
        B = M @ V
        C = M.T @ B
        w, X = jnp.linalg.eigh(B.T @ B)
        s2, x = w[-1], X[:, -1]
        r = C @ x - s2 * (V @ x)
        return C, V, jnp.sqrt(jnp.maximum(s2, 0.0)), jnp.linalg.norm(r) / jnp.maximum(s2, tiny), it + 1

    def cond(c):
        # at least one iteration; then stop on a small residual ‖MᵀMv − σ²v‖/σ²: unlike a small change of
        # σ, it cannot be met while the iteration is still creeping through a cluster of close values
        return (c[4] < 1) | ((c[4] < max_iters) & (c[3] > tol))

    # the loop starts from MᵀM times the mixed start block (no separate QR, no copy of the body)
    c0 = (M.T @ (M @ (V + 0.5 * G)), V, jnp.zeros((), M.dtype), jnp.ones((), M.dtype), 0)
    _, V, sig, _, _ = jax.lax.while_loop(cond, body, c0)
    return sig, V


@functools.cache
def _normal_block(shape: tuple[int, ...], seed: int) -> np.ndarray:
    # drawn on the host in float64 (a constant of the program: no random-number code to trace and compile)
    return np.random.default_rng(seed).standard_normal(shape)


def _mixing_block(shape: tuple[int, ...], dtype: Any) -> jax.Array:
    """The fixed random block mixed into every warm start, columns of norm about 1."""
    return jnp.asarray(_normal_block(tuple(shape), 1) / math.sqrt(shape[0]), dtype)


def _init_block(d, r, dtype):
    """An orthonormal random d × r start block (a constant of the program)."""
    q, _ = np.linalg.qr(_normal_block((d, r), 0))
    return jnp.asarray(q, dtype)


def kahan_add(sc: tuple[jax.Array, jax.Array], x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Compensated summation step on ``sc = (sum, compensation)`` (value ≈ sum − compensation); kept for
    callers of the old name — new code uses `logspace.compensated_add` or a `logspace.LogProduct`."""
    return logspace.compensated_add(sc[0], sc[1], x)


def block_pairs(model: Any) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
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


def lag_pair_names(model: Any) -> list[str]:
    """The block pairs a lag profile reports, in the order of its ``pf``/``ps`` columns: a real-diagonal
    model only ``"b→b"`` (its cross-block pairs are exactly zero), every other model `block_pairs`."""
    if structure(model) == "diagonal":
        return [f"{b}→{b}" for b in model.blocks]
    return [p[0] for p in block_pairs(model)]


@dataclasses.dataclass(frozen=True)
class LagProfile:
    """Entry k: log10 norms of ``∂S_T/∂S_k`` (k = 0..T−1, lag T−k); ``blocks`` per block pair."""

    log10_spectral: jax.Array
    log10_frobenius: jax.Array
    blocks: dict
    length: int

    @property
    def lags(self) -> jax.Array:
        return jnp.arange(self.length, 0, -1)


def _lag_dense(jac_at, T, d, dtype, slices, spectral):
    """The dense lag profile of one sequence from its step Jacobians ``jac_at(k)`` = J_k, k = 0..T−1:
    ``(spectral, Frobenius, per-pair Frobenius, per-pair spectral)``; ``slices`` the ``(rows, cols)`` of
    each reported block pair."""
    tol = _tol(dtype)
    r = min(SUBSPACE_RANK, d)
    V0 = _init_block(d, r, dtype)
    # block pairs of one shape are one batched norm computation (one while loop, not one per pair);
    # a one-block model's h→h is the whole state and takes the full state's norms
    groups: dict[tuple[int, int], list[int]] = {}
    for i, ((r0, r1), (c0, c1)) in enumerate(slices):
        if (r0, r1, c0, c1) != (0, d, 0, d):
            groups.setdefault((r1 - r0, c1 - c0), []).append(i)
    pV0 = [jnp.stack([_init_block(c, min(SUBSPACE_RANK, c), dtype)] * len(ix)) for (_, c), ix in groups.items()]
    exact = spectral == "exact"

    def body(carry, k):
        P, V, pV = carry
        P = logspace.update(P, jac_at(k))  # ∂S_T/∂S_k = ∂S_T/∂S_{k+1} · J_k
        frob = logspace.log10_frobenius(P)
        if spectral:
            sig, V = top_singular_value(P.matrix, V, tol, exact=exact)
            spec = logspace.log10_scaled(P, sig)
        else:
            spec = jnp.full_like(frob, jnp.nan)
        pf, ps = [frob] * len(slices), [spec] * len(slices)
        newpV = []
        for ix, v in zip(groups.values(), pV):
            subs = jnp.stack([P.matrix[r0:r1, c0:c1] for (r0, r1), (c0, c1) in (slices[i] for i in ix)])
            f = logspace.log10_scaled(P, jnp.linalg.norm(subs, axis=(-2, -1)))
            if spectral:
                sig, v = jax.vmap(lambda m, w: top_singular_value(m, w, tol, exact=exact))(subs, v)
                s = logspace.log10_scaled(P, sig)
            else:
                s = jnp.full_like(f, jnp.nan)
            for j, i in enumerate(ix):
                pf[i], ps[i] = f[j], s[j]
            newpV.append(v)
        return (P, V, newpV), (spec, frob, jnp.stack(pf) if pf else frob[None], jnp.stack(ps) if ps else frob[None])

    carry0 = (logspace.init(jnp.eye(d, dtype=dtype)), V0, pV0)
    _, (spec, frob, pf, ps) = jax.lax.scan(body, carry0, jnp.arange(T), reverse=True)
    return spec, frob, pf, ps  # (T, pairs)


# --- the diagonal fast path ------------------------------------------------------------------------


def _norms(x, mult=1):
    """``(log10 spectral, log10 Frobenius)`` of a diagonal with natural-log magnitudes ``x`` (…, units),
    each unit counted ``mult`` times (2: a complex unit's rotation-scaling block has two equal singular
    values)."""
    frob = 0.5 * (jax.nn.logsumexp(2 * x, axis=-1) + math.log(mult))
    return jnp.max(x, axis=-1) / LN10, frob / LN10


def diag_unit_logs(
    model: Any, L: jax.Array, phase: jax.Array | None
) -> tuple[jax.Array, int, list[tuple[str, jax.Array]]]:
    """``(full, mult, pairs)`` for a diagonal product with per-unit log-magnitudes ``L`` (…, n) and phases
    (complex only): the full state's unit logs with their multiplicity, and ``[(name, logs)]`` for every
    pair of `lag_pair_names`."""
    if structure(model) == "complex-diagonal":
        assert phase is not None, "a complex-diagonal product carries its phases"
        # [[cos, −sin], [sin, cos]]: a block onto itself carries |P| cos φ, onto the other |P| sin φ
        lc, lsn = jnp.log(jnp.abs(jnp.cos(phase))), jnp.log(jnp.abs(jnp.sin(phase)))
        a_re, a_im = model.blocks
        pairs = [(f"{b}→{a}", L + (lc if a == b else lsn)) for a in (a_re, a_im) for b in (a_re, a_im)]
        return L, 2, pairs
    pairs, i = [], 0
    for name, n in zip(model.blocks, model.block_sizes):
        pairs.append((f"{name}→{name}", L[..., i : i + n]))
        i += n
    return L, 1, pairs


@per_example
def _lag_diag(model, xs, S, parallel=None):
    la, ph = log_diagonals(model, xs, S)
    P = logspace.diag_suffix(la, ph, parallel=parallel)  # entry k: the diagonal of ∂S_T/∂S_k
    full, mult, pairs = diag_unit_logs(model, logspace.diag_log_abs(P), P.phase)
    spec, frob = _norms(full, mult)
    pn = [_norms(x) for _, x in pairs]
    return spec, frob, jnp.stack([f for _, f in pn], -1), jnp.stack([s for s, _ in pn], -1)


def pair_slices(model: Any) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """The ``(rows, cols)`` of every `block_pairs` entry: all a dense stage needs of the model's blocks."""
    return tuple((rows, cols) for _, rows, cols in block_pairs(model))


_lag_model = model_route(_lag_dense)
_lag_jac = jac_route(_lag_dense)


@cached_program(static_argnames=("batched", "diag", "spectral", "blocks"))
def _lag_profile(model, xs, S, batched, diag, spectral, blocks=True):
    """``diag``: take the diagonal fast path (the model must be `is_diagonal`); False forces the dense one.
    ``blocks=False``: the dense path computes no block-pair norms."""
    if diag:
        return _lag_diag(model, xs, S, batched=batched)
    return _lag_model(model, xs, S, pair_slices(model) if blocks else (), spectral, batched=batched)


@cached_program(static_argnames=("batched", "slices", "spectral"))
def _lag_profile_of(J, *, batched, slices, spectral):
    # keyed by shapes and block slices alone, not by the model: cells of one state layout share the program
    return _lag_jac(J, batched=batched, slices=slices, spectral=spectral)


def _lag_record(model, out, T, blocks=True) -> LagProfile:
    spec, frob, pf, ps = out
    names = lag_pair_names(model) if blocks else []
    if names:  # the pairs' columns as arrays of their own
        pf, ps = unstack(pf, -1), unstack(ps, -1)
    pairs = {n: {"log10_spectral": ps[i], "log10_frobenius": pf[i]} for i, n in enumerate(names)}
    return LagProfile(spec, frob, pairs, int(T))


def _check_lag(spectral, blocks) -> None:
    if spectral not in (True, False, "exact"):
        raise ConfigError(f"spectral={spectral!r} is not allowed: use True, False or 'exact'")
    if not isinstance(blocks, bool):
        raise ConfigError(f"blocks={blocks!r} is not allowed: use True or False")


def lag_profile_of(
    model: Any, steps: TrajectorySteps, *, spectral: bool | str = True, blocks: bool = True
) -> LagProfile:
    """`lag_profile` from a rollout whose step Jacobians are materialised (`trajectory_steps`); the same
    numbers, one compiled program for every dense model of one state layout. Diagonal models take their
    fast path from the inputs and states."""
    _check_lag(spectral, blocks)
    T = int(steps.xs.shape[-2])
    if is_diagonal(model):
        out = _lag_profile(model, steps.xs, steps.S, batched=steps.batched, diag=True, spectral=spectral)
        return _lag_record(model, out, T, blocks)
    slices = pair_slices(model) if blocks else ()
    out = _lag_profile_of(steps.jac, batched=steps.batched, slices=slices, spectral=spectral)
    return _lag_record(model, out, T, blocks)


def lag_profile(
    model: Any, xs: ArrayLike, state0: Any = None, *, spectral: bool | str = True, blocks: bool = True
) -> LagProfile:
    """log10 spectral and Frobenius norms of ``∂S_T/∂S_k`` for k = 0..T−1, for the full state and per
    block pair (``"h→h"``, ``"c→h"`` = ∂h_T/∂c_k, ...). Batched inputs give a leading B axis.

    Spectral norms: exact SVD for blocks up to ``EXACT_MAX`` wide, warm-started subspace iteration above
    (relative residual ≤ 1e-4 in float32, 1e-12 in float64, at most 50 iterations per lag: in float32 a log10
    norm within 2.2e-5 of a singular value's, `_tol`; where the top singular values agree to ~1e-4 the
    estimate can sit up to ~1e-3 log10 low). ``spectral="exact"``
    takes an SVD at every lag instead (slower); ``spectral=False`` skips them (Frobenius only).
    ``blocks=False`` skips the block pairs (``blocks`` is then empty): the full state's norms only, about
    half the work of an LSTM's profile. Diagonal and complex-diagonal models take the O(T·d) fast path:
    every norm exact, ``spectral`` moot."""
    _check_lag(spectral, blocks)
    plan_stage("lag_profile", model, xs)  # before the rollout: refuse what would not fit
    pxs, S, batched = prepare(model, xs, state0)
    diag = is_diagonal(model)
    out = _lag_profile(model, pxs, S, batched=batched, diag=diag, spectral=spectral, blocks=blocks)
    return _lag_record(model, out, pxs.shape[-2], blocks)


@dataclasses.dataclass(frozen=True)
class Triangle:
    """``log10_frobenius[t, k] = log10 ‖∂S_t/∂S_k‖_F`` for 0 ≤ k ≤ t ≤ T; NaN above the diagonal."""

    log10_frobenius: jax.Array
    log10_spectral: jax.Array | None


def _identity_norms(d, dtype):
    """``[log10 ‖I‖_F, log10 ‖I‖_2]`` of the d × d identity ∂S_t/∂S_t, shape (2, 1)."""
    return jnp.asarray([0.5 * math.log10(d), 0.0], dtype)[:, None]


def _triangle_dense(jac_at, T, d, dtype, chunk, spectral):
    """The triangle of one sequence from its step Jacobians ``jac_at(t)``: (2, T+1, T+1) log10 norms."""
    C = chunk
    nc = -(-T // C)
    width = nc * C + 1
    out0 = jnp.full((2, T + 1, width), jnp.nan, dtype)
    idx = jnp.arange(T + 1)
    out0 = out0.at[:, idx, idx].set(_identity_norms(d, dtype))

    # a chunk's slots start one per step over its first C steps; multiplying all C slots from the start
    # would waste about C²/2 products per chunk (~12 % of the work at C = T/8), so those steps run in
    # phases of growing width, each multiplying only the slots that can have started
    nph = min(C, _PHASES)
    widths = sorted({-(-C * (i + 1) // nph) for i in range(nph)})  # the last is C

    def chunk_body(c, out):
        k0 = c * C

        def phase(wid):
            def t_body(t, carry):
                P, out = carry
                J = jac_at(t)
                # every started slot: ∂S_{t+1}/∂S_k = J_t ∂S_t/∂S_k, all slots in one GEMM (the products'
                # transposes stacked, (wid, d, d)); slot t − k0 (if in this chunk) starts here with J_t
                P = logspace.update_wide(P, J)
                j = jnp.minimum(t - k0, wid - 1)
                ok = t - k0 < wid
                fresh = logspace.init(J.T)
                old = jax.lax.dynamic_slice_in_dim(P.matrix, j, 1, axis=0)
                P = logspace.LogProduct(
                    jax.lax.dynamic_update_slice_in_dim(P.matrix, jnp.where(ok, fresh.matrix[None], old), j, 0),
                    P.log_scale.at[j].set(jnp.where(ok, fresh.log_scale, P.log_scale[j])),
                    P.compensation.at[j].set(jnp.where(ok, fresh.compensation, P.compensation[j])),
                )
                live = k0 + jnp.arange(wid) <= t
                row_f = jnp.where(live, logspace.log10_frobenius(P), jnp.nan)
                if spectral:
                    sig = jnp.linalg.norm(P.matrix, ord=2, axis=(1, 2))  # ‖Pᵀ‖₂ = ‖P‖₂
                    row_s = jnp.where(live, logspace.log10_scaled(P, sig), jnp.nan)
                else:
                    row_s = jnp.full_like(row_f, jnp.nan)
                rows = jnp.pad(jnp.stack([row_f, row_s]), ((0, 0), (0, C - wid)), constant_values=jnp.nan)
                out = jax.lax.dynamic_update_slice(out, rows[:, None, :].astype(dtype), (0, t + 1, k0))
                return P, out

            return t_body

        # slots that have not started are the zero product (log-scale −inf); only live ones are read
        P = logspace.LogProduct(jnp.zeros((0, d, d), dtype), jnp.zeros((0,), dtype), jnp.zeros((0,), dtype))
        lo = k0
        for wid in widths:
            n_new = wid - P.log_scale.shape[0]
            P = logspace.LogProduct(
                jnp.concatenate([P.matrix, jnp.zeros((n_new, d, d), dtype)]),
                jnp.concatenate([P.log_scale, jnp.full((n_new,), -jnp.inf, dtype)]),
                jnp.concatenate([P.compensation, jnp.zeros((n_new,), dtype)]),
            )
            hi = T if wid == C else jnp.minimum(T, k0 + wid)
            P, out = jax.lax.fori_loop(lo, hi, phase(wid), (P, out))
            lo = hi
        return out

    out = jax.lax.fori_loop(0, nc, chunk_body, out0)
    # the row writes above cover a chunk's whole width, so they overwrite the diagonal ∂S_t/∂S_t = I
    # of row t with NaN ("not yet started"): put it back
    out = out.at[:, idx, idx].set(_identity_norms(d, dtype))
    return out[:, :, : T + 1]


@per_example
def _triangle_diag(model, xs, S):
    """The triangle of a diagonal model: T slots of per-unit products, all advanced each step (O(T²·d))."""
    T, d = xs.shape[0], S.shape[-1]
    dtype = S.dtype
    la, ph = log_diagonals(model, xs, S)
    slot = jnp.arange(T)
    full0 = logspace.diag_identity(la.shape[1:], dtype, ph is not None)
    P0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (T,) + a.shape), full0)

    def body(P, t):
        step = logspace.diag_update(P, la[t], None if ph is None else ph[t])
        live = slot <= t  # slot k holds ∂S_{t+1}/∂S_k once k ≤ t; later slots stay the empty product
        P = jax.tree.map(lambda a, b: jnp.where(live[:, None], a, b), step, P)
        full, mult, _ = diag_unit_logs(model, logspace.diag_log_abs(P), P.phase)
        spec, frob = _norms(full, mult)
        return P, jnp.where(live, jnp.stack([frob, spec]), jnp.nan)

    _, rows = jax.lax.scan(body, P0, jnp.arange(T))  # rows[t] = row t + 1, (2, T)
    out = jnp.concatenate([jnp.full((1, 2, T), jnp.nan, dtype), rows.astype(dtype)], 0)  # (T+1, 2, T)
    out = jnp.concatenate([jnp.moveaxis(out, 1, 0), jnp.full((2, T + 1, 1), jnp.nan, dtype)], -1)
    idx = jnp.arange(T + 1)
    return out.at[:, idx, idx].set(_identity_norms(d, dtype))


_triangle_model = model_route(_triangle_dense)
_triangle_jac = jac_route(_triangle_dense)


@cached_program(static_argnames=("batched", "chunk", "spectral", "diag"))
def _triangle(model, xs, S, batched, chunk, spectral, diag):
    if diag:
        return _triangle_diag(model, xs, S, batched=batched)
    return _triangle_model(model, xs, S, chunk, spectral, batched=batched)


@cached_program(static_argnames=("batched", "chunk", "spectral"))
def _triangle_of(J, *, batched, chunk, spectral):
    return _triangle_jac(J, batched=batched, chunk=chunk, spectral=spectral)


def _chunk_size(T, d, batch, itemsize):
    """Slots per chunk: chunks let only products that have started be multiplied (about half the work
    of multiplying all T slots every step); the chunk must also fit the memory budget."""
    budget = min(256 * 2**20, int(BUDGET_FRACTION * available_bytes()))
    slot = batch * d * d * itemsize
    require(slot + 2 * batch * (T + 1) ** 2 * itemsize, "triangle (one product and the (T+1)² output)", budget=budget)
    by_mem = max(1, (budget - 2 * batch * (T + 1) ** 2 * itemsize) // slot)
    return int(max(1, min(T, -(-T // 8) if T >= 64 else T, by_mem)))


def triangle(
    model: Any, xs: ArrayLike, state0: Any = None, *, spectral: bool = False, chunk: int | None = None
) -> Triangle:
    """``log10 ‖∂S_t/∂S_k‖_F`` for all 0 ≤ k ≤ t ≤ T (shape ``(T+1, T+1)``, NaN above the diagonal);
    spectral norms too with ``spectral=True`` (one SVD per entry: slower; free for diagonal models, whose
    triangle needs no matrix and no ``chunk``)."""
    plan_stage("triangle", model, xs, chunk=chunk)
    pxs, S, batched = prepare(model, xs, state0)
    diag = is_diagonal(model)
    # planned before the rollout (plan_stage "triangle" counts the diagonal case's T·d products and output)
    c = _chunk_of(pxs, S, batched, diag, chunk)
    out = _triangle(model, pxs, S, batched=batched, chunk=c, spectral=spectral, diag=diag)
    return Triangle(out[..., 0, :, :], out[..., 1, :, :] if spectral else None)


def _chunk_of(xs, S, batched, diag, chunk) -> int:
    T, d = xs.shape[-2], S.shape[-1]
    B = xs.shape[0] if batched else 1
    return int(1 if diag else chunk or _chunk_size(T, d, B, S.dtype.itemsize))


def triangle_of(model: Any, steps: TrajectorySteps, *, spectral: bool = False, chunk: int | None = None) -> Triangle:
    """`triangle` from a rollout whose step Jacobians are materialised (`trajectory_steps`)."""
    diag = is_diagonal(model)
    c = _chunk_of(steps.xs, steps.S, steps.batched, diag, chunk)
    if diag:
        out = _triangle(model, steps.xs, steps.S, batched=steps.batched, chunk=c, spectral=spectral, diag=True)
    else:
        out = _triangle_of(steps.jac, batched=steps.batched, chunk=c, spectral=spectral)
    return Triangle(out[..., 0, :, :], out[..., 1, :, :] if spectral else None)
