"""MUT1-3 (Jozefowicz et al. 2015) against hand-written NumPy steps from the printed equations
(with the weight matrices inserted where sizes differ), analytic Jacobians against jax.jacfwd, and the
closed-form direct path diag(1 − z)."""

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
from gradscope.cells.mut import MUT1, MUT2, MUT3

M, N = 3, 5
NAMES = ["mut1", "mut2", "mut3"]


def mut1_ref(p, x, h):
    z = sigmoid(p["weight_xz"] @ x + p["bias_z"])
    r = sigmoid(p["weight_xr"] @ x + p["weight_hr"] @ h + p["bias_r"])
    u = np.tanh(x) if p["weight_xh"] is None else np.tanh(p["weight_xh"] @ x)  # printed: tanh(x_t)
    c = np.tanh(p["weight_hh"] @ (r * h) + u + p["bias_h"])
    return c * z + h * (1 - z), {"z": z, "r": r, "candidate": c}


def mut2_ref(p, x, h):
    z = sigmoid(p["weight_xz"] @ x + p["weight_hz"] @ h + p["bias_z"])
    xr = x if p["weight_xr"] is None else p["weight_xr"] @ x  # printed: x_t in the reset gate
    r = sigmoid(xr + p["weight_hr"] @ h + p["bias_r"])
    c = np.tanh(p["weight_hh"] @ (r * h) + p["weight_xh"] @ x + p["bias_h"])
    return c * z + h * (1 - z), {"z": z, "r": r, "candidate": c}


def mut3_ref(p, x, h):
    z = sigmoid(p["weight_xz"] @ x + p["weight_hz"] @ np.tanh(h) + p["bias_z"])
    r = sigmoid(p["weight_xr"] @ x + p["weight_hr"] @ h + p["bias_r"])
    c = np.tanh(p["weight_hh"] @ (r * h) + p["weight_xh"] @ x + p["bias_h"])
    return c * z + h * (1 - z), {"z": z, "r": r, "candidate": c}


REFS = {"mut1": mut1_ref, "mut2": mut2_ref, "mut3": mut3_ref}
GATES = ("z", "r", "candidate")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
def test_matches_numpy_reference(name, dtype, tol):
    check_matches_reference(name, REFS[name], M, N, dtype, tol, gate_keys=GATES)


@pytest.mark.parametrize("name", ["mut1", "mut2"])
def test_printed_form_matches_reference(name):
    """printed=True (input size = hidden size): tanh(x_t) / x_t with no weight matrix, as printed."""
    cell = check_matches_reference(name, REFS[name], N, N, jnp.float64, 1e-12, gate_keys=GATES, printed=True)
    assert (cell.weight_xh if name == "mut1" else cell.weight_xr) is None
    check_jacobian_vs_autodiff(cell)


@pytest.mark.parametrize("name", NAMES)
def test_jacobian_matches_autodiff(name):
    cell = make(name, M, N, key=jax.random.key(3), dtype=jnp.float64)
    check_jacobian_vs_autodiff(jax.tree.map(lambda w: 2 * w, cell))


def test_mut1_direct_path_closed_form():
    """Jozefowicz et al. 2015: MUT1 with W_hh = W_hr = 0 has ∂h'/∂h = diag(1 − z) exactly."""
    cell = make("mut1", M, N, key=jax.random.key(4), dtype=jnp.float64)
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros((N, N)), weight_hr=jnp.zeros((N, N)))
    rng = np.random.default_rng(4)
    x, h = rng.standard_normal(M), rng.standard_normal(N)
    p = np_params(cell)
    want = np.diag(1 - sigmoid(p["weight_xz"] @ x + p["bias_z"]))
    for Jh in (
        cell.jacobian(jnp.asarray(x), (jnp.asarray(h),), 0)[0],
        autodiff_jacobians(cell, jnp.asarray(x), (jnp.asarray(h),), 0)[0],
    ):
        np.testing.assert_allclose(np.asarray(Jh), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["mut2", "mut3"])
def test_mut23_direct_path_closed_form(name):
    """MUT2/3: z also reads h, so W_hz must vanish too; then ∂h'/∂h = diag(1 − z) exactly."""
    cell = make(name, M, N, key=jax.random.key(5), dtype=jnp.float64)
    zero = jnp.zeros((N, N))
    cell = dataclasses.replace(cell, weight_hh=zero, weight_hr=zero, weight_hz=zero)
    rng = np.random.default_rng(5)
    x, h = rng.standard_normal(M), rng.standard_normal(N)
    p = np_params(cell)
    want = np.diag(1 - sigmoid(p["weight_xz"] @ x + p["bias_z"]))
    Jh = cell.jacobian(jnp.asarray(x), (jnp.asarray(h),), 0)[0]
    np.testing.assert_allclose(np.asarray(Jh), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_direct_path_is_one_minus_z(name):
    cell = make(name, M, N, key=jax.random.key(6), dtype=jnp.float64)
    x, h = np.linspace(-1, 1, M), np.linspace(0.5, -0.5, N)
    _, gates = REFS[name](np_params(cell), x, h)
    got = cell.direct_path(jnp.asarray(x), (jnp.asarray(h),), 0)
    np.testing.assert_allclose(np.asarray(got), 1 - gates["z"], rtol=0, atol=1e-14)


@pytest.mark.parametrize("name,cls", [("mut1", MUT1), ("mut2", MUT2), ("mut3", MUT3)])
def test_make_layout_and_init(name, cls):
    cell = make(name, M, N, key=jax.random.key(7))
    assert isinstance(cell, cls) and cell.blocks == ("h",) and cell.dtype == jnp.float32
    for f in dataclasses.fields(cell):
        if f.name.startswith("weight_x"):
            assert getattr(cell, f.name).shape == (N, M), f.name
        elif f.name.startswith("weight_h") or f.name.startswith("bias"):
            assert getattr(cell, f.name).shape[0] == N, f.name
    for w in jax.tree.leaves(cell):
        assert float(jnp.abs(w).max()) <= 1 / np.sqrt(N)
    assert ("weight_hz" in {f.name for f in dataclasses.fields(cell)}) == (name != "mut1")


@pytest.mark.parametrize("name", NAMES)
def test_jit_vmap_grad(name):
    cell = make(name, M, N, key=jax.random.key(8), dtype=jnp.float64)
    check_jit_vmap(cell)
    check_grad_through_rollout(cell)


def test_bad_options():
    with pytest.raises(ConfigError, match="printed"):
        make("mut1", M, N, key=jax.random.key(0), printed=True)  # M != N: the printed form cannot type-check
    with pytest.raises(ConfigError, match="printed"):
        make("mut2", N, N, key=jax.random.key(0), printed="yes")
    with pytest.raises(ConfigError, match="printed"):
        make("mut3", N, N, key=jax.random.key(0), printed=True)  # MUT3 has weights everywhere already
