"""Path decompositions of the gradient and gate statistics.

LSTM (Hochreiter & Schmidhuber 1997; Gers et al. 2000): ``∂c_T/∂c_k`` = the forget-gate highway
``∏_j diag(f_j)`` + the remainder (every path that leaves the cell state through h and the gates).
The split is exact by construction: remainder = total − highway, evaluated in log space so that
neither overflows. GRU: the direct path ``∏ diag(z_j)`` (PyTorch; z means keep) or ``∏ diag(1 − z_j)``
(Cho/Chung; z means write) of ``∂h_T/∂h_k`` versus the rest. Any cell with a ``direct_path(x, state, t)``
method (returning the diagonal of its direct path) and a ``direct_block`` name (default ``"h"``) gets
the same split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradscope.cells._base import unflatten_state
from gradscope.engine import logspace
from gradscope.engine._exported import cached_program
from gradscope.engine._memory import plan_stage
from gradscope.engine._prep import LN10, model_jac, per_example, per_sequence, prepare, unstack
from gradscope.engine.jacobians import TrajectorySteps
from gradscope.engine.products import SUBSPACE_RANK, _tol, top_singular_value


def has_direct_path(model: Any) -> bool:
    return callable(getattr(model, "direct_path", None))


@dataclasses.dataclass(frozen=True)
class PathSplit:
    """Entry k (lag T−k) of the block ``block`` of ``∂S_T/∂S_k``: log10 norms of the total, the direct
    path (highway) and the remainder. Highway + remainder == total exactly."""

    block: str
    total_log10_spectral: jax.Array
    total_log10_frobenius: jax.Array
    highway_log10_spectral: jax.Array
    highway_log10_frobenius: jax.Array
    remainder_log10_spectral: jax.Array
    remainder_log10_frobenius: jax.Array


def _split(jac_at, direct_at, T, d, dtype, r0, r1):
    """The path split of one sequence from its step Jacobians ``jac_at(k)`` and the diagonals of its
    direct path ``direct_at(k)``: (6, T) log10 norms of the total, highway and remainder."""
    tol = _tol(dtype)
    nb = r1 - r0
    v0 = jnp.eye(nb, min(SUBSPACE_RANK, nb), dtype=dtype)

    def body(c, k):
        P, H, Vt, Vr = c
        # the total ∂S_T/∂S_k and the highway ∏_{j≥k} diag(direct_j), both in log space
        P = logspace.update(P, jac_at(k))
        H = logspace.diag_update(H, jnp.log(jnp.abs(direct_at(k))))
        s, L = logspace.log_scale(P), logspace.diag_log_abs(H)
        M = P.matrix
        tot = M[r0:r1, r0:r1]
        m = jnp.maximum(s, jnp.max(L))
        m = jnp.where(jnp.isfinite(m), m, 0.0)
        rem = jnp.exp(s - m) * tot - jnp.diag(jnp.exp(L - m))
        st_, Vt = top_singular_value(tot, Vt, tol)
        sr, Vr = top_singular_value(rem, Vr, tol)
        out = (
            logspace.log10_scaled(P, st_),
            logspace.log10_scaled(P, jnp.linalg.norm(tot)),
            jnp.max(L) / LN10,
            0.5 * jax.nn.logsumexp(2 * L) / LN10,
            jnp.log10(sr) + m / LN10,
            jnp.log10(jnp.linalg.norm(rem)) + m / LN10,
        )
        return (P, H, Vt, Vr), jnp.stack(out)

    c0 = (logspace.init(jnp.eye(d, dtype=dtype)), logspace.diag_identity((nb,), dtype, False), v0, v0)
    _, out = jax.lax.scan(body, c0, jnp.arange(T), reverse=True)
    return out.T


@per_example
def _split_model(model, xs, S, r0, r1):
    def direct_at(k):
        return model.direct_path(xs[k], unflatten_state(model, S[k]), k)

    return _split(model_jac(model, xs, S), direct_at, xs.shape[0], S.shape[-1], S.dtype, r0, r1)


@cached_program(static_argnames=("batched", "r0", "r1"))
def _path_split(model, xs, S, batched, r0, r1):
    return _split_model(model, xs, S, r0, r1, batched=batched)


@per_sequence
def _split_jac(J, D, r0, r1):
    return _split(J.__getitem__, D.__getitem__, J.shape[0], J.shape[-1], J.dtype, r0, r1)


@cached_program(static_argnames=("batched", "r0", "r1"))
def _path_split_of(J, D, *, batched, r0, r1):
    # keyed by shapes and the block's rows alone: cells with a direct path of one layout share the program
    return _split_jac(J, D, batched=batched, r0=r0, r1=r1)


def path_split(model: Any, xs: ArrayLike, state0: Any = None) -> PathSplit:
    """Split the direct-path block of ``∂S_T/∂S_k`` (LSTM: c→c; GRU, MUT, minimalRNN: h→h) into the
    direct path and the rest, for every k."""
    block, r0, r1 = _direct_rows(model)
    plan_stage("path_split", model, xs)  # before the rollout: refuse what would not fit
    pxs, S, batched = prepare(model, xs, state0)
    out = _path_split(model, pxs, S, batched=batched, r0=r0, r1=r1)
    return PathSplit(block, *unstack(out, -2))


def path_split_of(model: Any, steps: TrajectorySteps) -> PathSplit:
    """`path_split` from a rollout whose step Jacobians and direct-path diagonals are materialised
    (`trajectory_steps(..., direct=True)`)."""
    block, r0, r1 = _direct_rows(model)
    assert steps.direct is not None, "trajectory_steps(..., direct=True) records the direct path"
    out = _path_split_of(steps.jac, steps.direct, batched=steps.batched, r0=r0, r1=r1)
    return PathSplit(block, *unstack(out, -2))


def _direct_rows(model: Any) -> tuple[str, int, int]:
    """``(block, first row, end row)`` of the model's direct-path block in the flat state."""
    from gradscope._errors import ConfigError

    if not has_direct_path(model):
        raise ConfigError(
            f"model {getattr(model, 'name', type(model).__name__)!r} has no direct path to split: "
            "path_split needs a cell with a direct path (LSTM, GRU, MUT, minimalRNN, sLSTM, mLSTM); "
            "use lag_profile for others (a diagonal cell's whole Jacobian is its direct path)"
        )
    block = getattr(model, "direct_block", "h")
    i = list(model.blocks).index(block)
    r0 = int(sum(model.block_sizes[:i]))
    r1 = r0 + int(model.block_sizes[i])
    return block, r0, r1


# --- gate statistics (no differentiation: they read the rollout's aux) --------------------------

SIGMOID_GATES = ("i", "f", "o", "r", "z", "u")


def _named_cells(model: Any) -> tuple[tuple[str, Any], ...]:
    """The model's leaf cells with their block prefixes (`Cell.named_cells`); a user model outside the
    Cell hierarchy is one cell."""
    walk: Callable[[], tuple[tuple[str, Any], ...]] | None = getattr(model, "named_cells", None)
    return walk() if callable(walk) else (("", model),)


def gate_statistics(
    model: Any, traj: Any, *, saturation: float = 0.01, forget_open: float = 0.95, bins: int = 20
) -> dict:
    """Gate saturation and dead-unit statistics from a `Trajectory`'s aux.

    * per sigmoid gate: fraction with σ' = s(1−s) < ``saturation``, mean value, histogram on [0, 1];
    * forget gates: fraction above ``forget_open`` (the highway held open);
    * relu cells: fraction of units inactive (pre-activation ≤ 0) at a step, and the fraction dead for
      the whole sequence.
    """
    out: dict = {}
    edges = np.linspace(0.0, 1.0, bins + 1)
    for prefix, cell in _named_cells(model):
        for g in SIGMOID_GATES:
            key = prefix + g
            if key not in traj.aux:
                continue
            v = np.asarray(traj.aux[key], np.float64)
            entry = {
                "mean": float(v.mean()),
                "saturated_fraction": float((v * (1 - v) < saturation).mean()),
                "histogram": np.histogram(v, bins=edges)[0].tolist(),
                "bin_edges": edges.tolist(),
            }
            if g == "f":
                entry["open_fraction"] = float((v > forget_open).mean())
            out[key] = entry
        if getattr(cell, "activation", None) == "relu" and prefix + "a" in traj.aux:
            a = np.asarray(traj.aux[prefix + "a"], np.float64)  # (…, T, n)
            inactive = a <= 0
            out[prefix + "relu"] = {
                "inactive_fraction": float(inactive.mean()),
                "dead_fraction": float(inactive.all(axis=-2).mean()),
            }
    return out
