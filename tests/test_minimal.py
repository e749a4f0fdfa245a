"""minimalRNN (Chen et al. 2018) against a hand-written NumPy step, its analytic Jacobian against
jax.jacfwd, the closed-form direct path diag(u), and the gate-bias option."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _gated_checks import (
    check_grad_through_rollout,
    check_jacobian_vs_autodiff,
    check_jit_vmap,
    check_matches_reference,
    np_params,
    sigmoid,
)

from gradscope import ConfigError
from gradscope.cells import make
from gradscope.cells._base import autodiff_jacobians
from gradscope.cells.minimal import MinimalRNN

M, N = 3, 5


def minimal_ref(p, x, h):
    """z = tanh(W_x x + b_z), u = σ(U_h h + U_z z + b_u), h' = u⊙h + (1−u)⊙z (float64)."""
    z = np.tanh(p["weight_x"] @ x + p["bias_z"])
    u = sigmoid(p["weight_uh"] @ h + p["weight_uz"] @ z + p["bias_u"])
    return u * h + (1 - u) * z, {"z": z, "u": u}


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
@pytest.mark.parametrize("gate_bias", [0.0, 2.0])
def test_matches_numpy_reference(dtype, tol, gate_bias):
    check_matches_reference("minimalrnn", minimal_ref, M, N, dtype, tol, gate_keys=("z", "u"), gate_bias=gate_bias)


def test_jacobian_matches_autodiff():
    cell = make("minimalrnn", M, N, key=jax.random.key(3), dtype=jnp.float64)
    check_jacobian_vs_autodiff(jax.tree.map(lambda w: 2 * w, cell))


def test_direct_path_closed_form():
    """With U_h = 0, ∂h'/∂h = diag(u) exactly (u then depends on x only)."""
    cell = make("minimalrnn", M, N, key=jax.random.key(4), dtype=jnp.float64, gate_bias=1.0)
    cell = dataclasses.replace(cell, weight_uh=jnp.zeros((N, N)))
    rng = np.random.default_rng(4)
    x, h = rng.standard_normal(M), rng.standard_normal(N)
    _, gates = minimal_ref(np_params(cell), x, h)
    want = np.diag(gates["u"])
    for Jh in (
        cell.jacobian(jnp.asarray(x), (jnp.asarray(h),), 0)[0],
        autodiff_jacobians(cell, jnp.asarray(x), (jnp.asarray(h),), 0)[0],
    ):
        np.testing.assert_allclose(np.asarray(Jh), want, rtol=0, atol=1e-15)
    got = cell.direct_path(jnp.asarray(x), (jnp.asarray(h),), 0)
    np.testing.assert_allclose(np.asarray(got), gates["u"], rtol=0, atol=1e-15)


def test_gate_bias_shifts_b_u_and_lengthens_memory():
    base = make("minimalrnn", M, N, key=jax.random.key(5), dtype=jnp.float64)
    biased = make("minimalrnn", M, N, key=jax.random.key(5), dtype=jnp.float64, gate_bias=4.0)
    np.testing.assert_allclose(np.asarray(biased.bias_u), np.asarray(base.bias_u) + 4.0, rtol=0, atol=1e-15)
    for name in ("weight_x", "weight_uh", "weight_uz", "bias_z"):
        assert jnp.array_equal(getattr(base, name), getattr(biased, name))
    # u → 1 with μ_b: the direct path (the per-step memory factor) moves towards 1.
    x, h = jnp.zeros(M), jnp.zeros(N)
    assert float(jnp.min(biased.direct_path(x, (h,), 0))) > 0.9
    assert float(jnp.max(base.direct_path(x, (h,), 0))) < 0.9


def test_make_layout_and_init():
    cell = make("minimalrnn", M, N, key=jax.random.key(6))
    assert isinstance(cell, MinimalRNN) and cell.blocks == ("h",) and cell.dtype == jnp.float32
    assert cell.weight_x.shape == (N, M)
    assert cell.weight_uh.shape == cell.weight_uz.shape == (N, N)
    assert cell.bias_z.shape == cell.bias_u.shape == (N,)
    for w in jax.tree.leaves(cell):
        assert float(jnp.abs(w).max()) <= 1 / np.sqrt(N)


def test_jit_vmap_grad():
    cell = make("minimalrnn", M, N, key=jax.random.key(7), dtype=jnp.float64, gate_bias=1.0)
    check_jit_vmap(cell)
    check_grad_through_rollout(cell)


@pytest.mark.parametrize("bad", ["big", float("nan"), float("inf"), True, None])
def test_bad_gate_bias(bad):
    with pytest.raises(ConfigError, match="gate_bias"):
        make("minimalrnn", M, N, key=jax.random.key(0), gate_bias=bad)


def test_unknown_option():
    with pytest.raises(ConfigError, match="forget_bias"):
        make("minimalrnn", M, N, key=jax.random.key(0), forget_bias=1.0)
