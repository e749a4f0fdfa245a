"""A rollout of elementwise recurrences ``h_t = clip(a_t + u ⊙ h_{t-1}, lo, hi)`` in O(log T) depth.

IndRNN with relu (lo = 0, hi = ∞) or a linear activation (lo = −∞, hi = ∞) is such a recurrence: every
neuron is its own one-dimensional map ``f_t(h) = clip(a_t + u h, lo, hi)``. Maps of the form
``h ↦ clip(A + B h, l, r)`` are closed under composition:

    g∘f (h) = clip(A₂ + B₂ A₁ + B₂ B₁ h,  clip(m, lo₂, hi₂),  clip(M, lo₂, hi₂))

where [m, M] is the image of [l₁, r₁] under y ↦ A₂ + B₂ y (B₂ < 0 swaps the ends; B₂ = 0 collapses it to
A₂), because clip(clip(w, m, M), lo, hi) = clip(w, clip(m, lo, hi), clip(M, lo, hi)). So the states
h_1 … h_T are the prefix compositions F_t = f_t∘…∘f_1 applied to h_0, which `jax.lax.associative_scan`
computes in ⌈log₂ T⌉ rounds instead of T sequential steps (Blelloch 1990). On a GPU this removes the
per-step latency of a T-step loop; on a CPU the loop is faster, so cells use it only on accelerators
unless asked to.

The prefix products B = ∏ u can overflow where the loop's states do not (e.g. |u| > 1 with every unit
clipped at 0), so cells take the loop whenever ``T · log max|u|`` could overflow (`parallel_safe`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# log of the largest prefix product ∏|u| the parallel form may build (float32's max is ~e^88)
_MAX_LOG_GROWTH = 40.0


def _image(end, A, B):
    """``A + B·end`` for an end of an interval; an infinite end maps by the sign of B, never as inf·B
    (inf·0 = NaN would poison the branch not taken; B = 0 is handled by the caller)."""
    finite = jnp.isfinite(end)
    return jnp.where(finite, A + B * jnp.where(finite, end, 0.0), jnp.where(B > 0, end, -end))


def _compose(f, g):
    """g∘f for maps h ↦ clip(A + B h, l, r) given as (A, B, l, r) arrays (f earlier, g later)."""
    A1, B1, l1, r1 = f
    A2, B2, l2, r2 = g
    at_l, at_r = _image(l1, A2, B2), _image(r1, A2, B2)  # the ends of f's range mapped by y ↦ A₂ + B₂ y
    lo = jnp.where(B2 > 0, at_l, jnp.where(B2 < 0, at_r, A2))
    hi = jnp.where(B2 > 0, at_r, jnp.where(B2 < 0, at_l, A2))
    return A2 + B2 * A1, B2 * B1, jnp.clip(lo, l2, r2), jnp.clip(hi, l2, r2)


def clip_affine_states(a: jax.Array, u: jax.Array, h0: jax.Array, lo: float, hi: float) -> jax.Array:
    """States h_1..h_T, shape (T, n), of ``h_t = clip(a_t + u ⊙ h_{t-1}, lo, hi)`` by an associative scan."""
    B = jnp.broadcast_to(u, a.shape)
    l = jnp.full_like(a, lo)
    r = jnp.full_like(a, hi)
    A, Bp, lp, rp = jax.lax.associative_scan(_compose, (a, B, l, r))
    return jnp.clip(A + Bp * h0, lp, rp)


def parallel_safe(u: jax.Array, length: int) -> jax.Array:
    """True where the prefix products ∏|u| over ``length`` steps cannot overflow (then the parallel form is
    as good as the loop). Depends on ``u`` only, so that a batch of sequences shares one decision (a
    `lax.cond` whose predicate is batched runs both branches)."""
    return length * jnp.log(jnp.maximum(jnp.max(jnp.abs(u)), 1.0)) <= _MAX_LOG_GROWTH


def wants_parallel(scan: str) -> bool:
    """The ``scan`` option of a cell: "parallel", "sequential", or "auto" (parallel on accelerators)."""
    return scan == "parallel" or (scan == "auto" and jax.default_backend() != "cpu")
