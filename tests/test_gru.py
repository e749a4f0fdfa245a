"""GRU cells: PyTorch's reset-after GRU against torch itself; Cho/Chung's reset-before GRU against a
hand-written NumPy step; analytic Jacobians against jax.jacfwd; the closed-form direct paths."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _gated_checks import (
    check_grad_through_rollout,
    check_jacobian_vs_autodiff,
    check_jit_vmap,
    check_matches_reference,
    np_params,
    random_inputs,
    sigmoid,
)

from gradscope import ConfigError, rollout
from gradscope.cells import make
from gradscope.cells._base import autodiff_jacobians
from gradscope.cells.gru import GRU, GRUChung

M, N = 3, 5


def chung_ref(p, x, h):
    """Cho/Chung GRU from the paper's equations (reset before the matmul, z writes), float64."""
    n = h.shape[0]
    W, U, b, c = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
    r = sigmoid(W[:n] @ x + b[:n] + U[:n] @ h + c[:n])
    z = sigmoid(W[n : 2 * n] @ x + b[n : 2 * n] + U[n : 2 * n] @ h + c[n : 2 * n])
    hc = np.tanh(W[2 * n :] @ x + b[2 * n :] + U[2 * n :] @ (r * h) + c[2 * n :])
    return (1 - z) * h + z * hc, {"r": r, "z": z, "n": hc}


def _from_torch(module, dtype, cell=False):
    sfx = "" if cell else "_l0"
    g = lambda k: jnp.asarray(getattr(module, k + sfx).detach().numpy(), dtype)  # noqa: E731
    return GRU(g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh"), input_size=M, hidden_size=N)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
def test_gru_matches_torch_gru(dtype, tol):
    torch.manual_seed(0)
    tg = torch.nn.GRU(M, N, batch_first=True)
    if dtype == jnp.float64:
        tg = tg.double()
    cell = _from_torch(tg, dtype)
    xs, h0 = random_inputs(0, 3, 7, M, N, np.dtype(dtype), scale=2.0)
    with torch.no_grad():
        out, hT = tg(torch.from_numpy(xs), torch.from_numpy(h0)[None])
    traj = rollout(cell, jnp.asarray(xs), (jnp.asarray(h0),))
    np.testing.assert_allclose(np.asarray(traj["h"][:, 1:]), out.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(np.asarray(traj.final[0]), hT[0].numpy(), rtol=0, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
def test_gru_matches_torch_grucell(dtype, tol):
    torch.manual_seed(1)
    tc = torch.nn.GRUCell(M, N)
    if dtype == jnp.float64:
        tc = tc.double()
    cell = _from_torch(tc, dtype, cell=True)
    xs, h0 = random_inputs(1, 4, 1, M, N, np.dtype(dtype), scale=2.0)
    with torch.no_grad():
        want = tc(torch.from_numpy(xs[:, 0]), torch.from_numpy(h0)).numpy()
    got = jax.vmap(lambda x, h: cell(x, (h,))[0][0])(jnp.asarray(xs[:, 0]), jnp.asarray(h0))
    assert got.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=tol)


def test_gru_aux_gates_match_reference():
    def torch_form_ref(p, x, h):  # PyTorch docs equations, float64
        n = h.shape[0]
        gi = p["weight_ih"] @ x + p["bias_ih"]
        gh = p["weight_hh"] @ h + p["bias_hh"]
        r = sigmoid(gi[:n] + gh[:n])
        z = sigmoid(gi[n : 2 * n] + gh[n : 2 * n])
        nn = np.tanh(gi[2 * n :] + r * gh[2 * n :])
        return (1 - z) * nn + z * h, {"r": r, "z": z, "n": nn}

    check_matches_reference("gru", torch_form_ref, M, N, jnp.float64, 1e-12, gate_keys=("r", "z", "n"))


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.float64, 1e-12)])
def test_chung_matches_numpy_reference(dtype, tol):
    check_matches_reference("gru-chung", chung_ref, M, N, dtype, tol, gate_keys=("r", "z", "n"))


def test_chung_differs_from_pytorch_form():
    """Same weights, different placement of the reset gate and meaning of z: different maps."""
    a = make("gru", M, N, key=jax.random.key(0), dtype=jnp.float64)
    b = GRUChung(a.weight_ih, a.weight_hh, a.bias_ih, a.bias_hh, input_size=M, hidden_size=N)
    x, h = jnp.ones(M), jnp.full(N, 0.3)
    assert float(jnp.abs(a(x, (h,))[0][0] - b(x, (h,))[0][0]).max()) > 1e-3


@pytest.mark.parametrize("name", ["gru", "gru-chung"])
def test_jacobian_matches_autodiff(name):
    cell = make(name, M, N, key=jax.random.key(3), dtype=jnp.float64)
    check_jacobian_vs_autodiff(jax.tree.map(lambda w: 2 * w, cell))


@pytest.mark.parametrize("name", ["gru", "gru-chung"])
def test_direct_path_closed_form(name):
    """Chung et al. 2014; torch.nn.GRU: with W_hh = 0, PyTorch GRU ∂h'/∂h = diag(z), Chung's = diag(1 − z)."""
    cell = make(name, M, N, key=jax.random.key(4), dtype=jnp.float64)
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros_like(cell.weight_hh))
    rng = np.random.default_rng(4)
    x, h = rng.standard_normal(M), rng.standard_normal(N)
    p = np_params(cell)
    z = sigmoid(p["weight_ih"][N : 2 * N] @ x + p["bias_ih"][N : 2 * N] + p["bias_hh"][N : 2 * N])
    want = np.diag(z if name == "gru" else 1 - z)
    Jh, _ = cell.jacobian(jnp.asarray(x), (jnp.asarray(h),), 0)
    Ah, _ = autodiff_jacobians(cell, jnp.asarray(x), (jnp.asarray(h),), 0)
    np.testing.assert_allclose(np.asarray(Jh), want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(Ah), want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        np.asarray(cell.direct_path(jnp.asarray(x), (jnp.asarray(h),), 0)), np.diag(want), rtol=0, atol=1e-15
    )


def test_direct_path_with_recurrent_weights():
    """With W_hh ≠ 0 the direct path is still z (PyTorch) / 1 − z (Chung), from the reference gates."""
    x, h = np.linspace(-1, 1, M), np.linspace(0.5, -0.5, N)
    for name in ("gru", "gru-chung"):
        cell = make(name, M, N, key=jax.random.key(5), dtype=jnp.float64)
        _, gates = chung_ref(np_params(cell), x, h)  # r and z are the same in both variants
        want = gates["z"] if name == "gru" else 1 - gates["z"]
        got = cell.direct_path(jnp.asarray(x), (jnp.asarray(h),), 0)
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name,cls", [("gru", GRU), ("gru-chung", GRUChung)])
def test_make_layout_and_init(name, cls):
    cell = make(name, M, N, key=jax.random.key(6))
    assert isinstance(cell, cls) and cell.blocks == ("h",) and cell.dtype == jnp.float32
    assert cell.weight_ih.shape == (3 * N, M) and cell.weight_hh.shape == (3 * N, N)
    assert cell.bias_ih.shape == cell.bias_hh.shape == (3 * N,)
    for w in jax.tree.leaves(cell):
        assert float(jnp.abs(w).max()) <= 1 / np.sqrt(N)
    same = make(name, M, N, key=jax.random.key(6))
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(cell), jax.tree.leaves(same)))
    nob = make(name, M, N, key=jax.random.key(6), bias=False)
    assert not jnp.any(nob.bias_ih) and not jnp.any(nob.bias_hh)


@pytest.mark.parametrize("name", ["gru", "gru-chung"])
def test_jit_vmap_grad(name):
    cell = make(name, M, N, key=jax.random.key(7), dtype=jnp.float64)
    check_jit_vmap(cell)
    check_grad_through_rollout(cell)


@pytest.mark.parametrize("name", ["gru", "gru-chung"])
def test_bad_options(name):
    with pytest.raises(ConfigError, match="bias"):
        make(name, M, N, key=jax.random.key(0), bias="yes")
    with pytest.raises(ConfigError, match="forget_bias"):
        make(name, M, N, key=jax.random.key(0), forget_bias=1.0)
