"""Probe mode: matrix-free lag profiles for large state sizes, with error bars.

Random probes ``z ~ N(0, I)`` are pulled back through the steps by vector–Jacobian products
(`jax.vjp` of the step; no d×d matrix is formed): ``z_kᵀ = zᵀ ∂S_T/∂S_k``. Hutchinson's identity
``E‖zᵀP‖² = ‖P‖_F²`` gives an unbiased Frobenius estimate; its standard error comes from the spread
over probes. ``max_p ‖z_pᵀP‖/‖z_p‖`` is a lower bound on the spectral norm. Each probe keeps its own
log-scale (no overflow). Cost O(p·T) VJPs, memory O(p·d).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradscope._errors import ConfigError
from gradscope.cells._base import flatten_state, unflatten_state
from gradscope.engine._memory import plan_stage
from gradscope.engine._prep import LN10, per_example, prepare


@dataclasses.dataclass(frozen=True)
class ProbeProfile:
    """Entry k: Hutchinson estimate of log10 ‖∂S_T/∂S_k‖_F (± ``log10_frobenius_stderr``) and a lower
    bound on log10 ‖∂S_T/∂S_k‖₂ from the probes."""

    log10_frobenius: jax.Array
    log10_frobenius_stderr: jax.Array
    log10_spectral_lower: jax.Array
    probes: int


@per_example
def _probe(model, xs, S, Z):
    T = xs.shape[0]
    p = Z.shape[0]

    def vjp_rows(Zr, k):
        def f(s):
            return flatten_state(model.step(xs[k], unflatten_state(model, s), k)[0])

        _, pull = jax.vjp(f, S[k])
        return jax.vmap(lambda z: pull(z)[0])(Zr)

    n0 = jnp.linalg.norm(Z, axis=-1)
    Zu = Z / n0[:, None]

    def body(c, k):
        Zu, l = c
        Zu = vjp_rows(Zu, k)
        n = jnp.linalg.norm(Zu, axis=-1)
        Zu = Zu / jnp.where(n > 0, n, 1)[:, None]
        l = l + jnp.log(n)
        # ‖zᵀP‖/‖z‖ = exp(l) for the unit probe; the raw probe's ‖zᵀP‖² = exp(2 (l + log ‖z‖))
        raw = 2 * (l + jnp.log(n0))
        mx = jnp.max(raw)
        w = jnp.exp(raw - mx)
        mean = jnp.mean(w)
        se = jnp.std(w, ddof=1) / jnp.sqrt(p) if p > 1 else jnp.zeros_like(mean)
        frob = 0.5 * (jnp.log(mean) + mx) / LN10
        frob_se = 0.5 * se / jnp.where(mean > 0, mean, 1) / LN10  # delta method on log10 √·
        return (Zu, l), jnp.stack([frob, frob_se, jnp.max(l) / LN10])

    _, out = jax.lax.scan(body, (Zu, jnp.zeros((p,), S.dtype)), jnp.arange(T), reverse=True)
    return out.T


@functools.partial(jax.jit, static_argnames=("batched",))
def _probe_profile(model, xs, S, Z, batched):
    return _probe(model, xs, S, Z, batched=batched)


def probe_lag_profile(
    model: Any, xs: ArrayLike, state0: Any = None, *, probes: int = 16, key: jax.Array | None = None
) -> ProbeProfile:
    """Matrix-free estimate of the lag profile (see module doc)."""
    if not (isinstance(probes, int) and probes >= 2):
        raise ConfigError(f"probes={probes!r} is not allowed: expected an integer >= 2")
    plan_stage("probe", model, xs, probes=probes)  # before the rollout: refuse what would not fit
    pxs, S, batched = prepare(model, xs, state0)
    key = jax.random.key(0) if key is None else key
    Z = jax.random.normal(key, (probes, S.shape[-1]), S.dtype)  # the same probes for every sequence
    out = _probe_profile(model, pxs, S, Z, batched)
    return ProbeProfile(out[..., 0, :], out[..., 1, :], out[..., 2, :], probes)
