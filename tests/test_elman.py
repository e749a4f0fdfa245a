"""Elman RNNs and IRNN against independent references.

* ``rnn-tanh`` / ``rnn-relu`` against ``torch.nn.RNN`` with the same weights copied in (our layout is PyTorch's);
* the other activations and IRNN against a float64 NumPy loop written here from
  ``h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (Pascanu et al. 2013; Le et al. 2015);
* the analytic step Jacobian ``diag(φ'(a)) W_hh`` against forward-mode autodiff;
* the IRNN and recurrent-init facts (W_hh = I, zero biases, orthogonality).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradscope as gs
from gradscope.cells import _registry
from gradscope.cells._base import autodiff_jacobians

torch.set_num_threads(1)

ELMAN = [n for n in gs.cells.names() if _registry.entry(n).family == "elman"]
SIZES = [(3, 5, 12), (1, 8, 17), (6, 4, 10)]  # (input_size, hidden_size, T)
TOL = {jnp.float32: 1e-6, jnp.float64: 1e-12}


# --- NumPy reference (float64, written from the equations, no gradscope code) -----------------


def _np_act(name, a):
    if name == "tanh":
        return np.tanh(a)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-a))
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "leaky-relu":
        return np.where(a > 0, a, 0.01 * a)
    if name == "elu":
        return np.where(a > 0, a, np.expm1(np.minimum(a, 0.0)))
    if name == "linear":
        return a
    raise AssertionError(name)


def _np_elman(W_ih, W_hh, b_ih, b_hh, act, xs, h0):
    W_ih, W_hh, b_ih, b_hh, xs, h = (np.asarray(a, np.float64) for a in (W_ih, W_hh, b_ih, b_hh, xs, h0))
    hs = [h]
    for x in xs:
        h = _np_act(act, W_ih @ x + b_ih + W_hh @ h + b_hh)
        hs.append(h)
    return np.stack(hs)


def _data(m, n, T, seed, dtype):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, m)).astype(dtype), (0.5 * rng.normal(size=(n,))).astype(dtype)


# --- torch.nn.RNN -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("m,n,T", SIZES)
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_matches_torch_rnn(act, m, n, T, dtype):
    cell = gs.cells.make(f"rnn-{act}", m, n, key=jax.random.key(m * 100 + n), dtype=dtype)
    xs, h0 = _data(m, n, T, seed=T, dtype=np.dtype(dtype))
    traj = gs.rollout(cell, xs, (h0,))

    tdt = torch.float32 if dtype == jnp.float32 else torch.float64
    rnn = torch.nn.RNN(m, n, nonlinearity=act).to(tdt)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(rnn, f"{name}_l0").copy_(torch.from_numpy(np.array(getattr(cell, name))))
        out, hn = rnn(torch.from_numpy(xs), torch.from_numpy(h0)[None])
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(traj["h"][1:]), out.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(traj.final[0]), hn[0].numpy(), rtol=tol, atol=tol)
    np.testing.assert_array_equal(np.asarray(traj["h"][0]), h0)
    assert traj["h"].dtype == dtype


# --- NumPy references for every Elman-family cell ------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("m,n,T", SIZES[:2])
@pytest.mark.parametrize("name", ELMAN)
def test_matches_numpy_reference(name, m, n, T, dtype):
    cell = gs.cells.make(name, m, n, key=jax.random.key(7 + n), dtype=dtype)
    act = "relu" if name == "irnn" else name[len("rnn-") :]
    xs, h0 = _data(m, n, T, seed=3 * T, dtype=np.dtype(dtype))
    if name == "irnn":
        h0 = np.abs(h0)  # start in the active region so the identity recurrence does something
    ref = _np_elman(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, act, xs, h0)
    traj = gs.rollout(cell, xs, (h0,))
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(traj["h"], np.float64), ref, rtol=tol, atol=tol)


# --- analytic Jacobian == autodiff --------------------------------------------------------------


@pytest.mark.parametrize("name", ELMAN)
def test_analytic_jacobian_matches_autodiff(name):
    m, n = 4, 6
    cell = gs.cells.make(name, m, n, key=jax.random.key(11), dtype=jnp.float64)
    rng = np.random.default_rng(5)
    xs, hs = jnp.asarray(rng.normal(size=(3, m))), jnp.asarray(rng.normal(size=(3, n)))
    both = jax.jit(jax.vmap(lambda x, h: (cell.jacobian(x, (h,), 0), autodiff_jacobians(cell, x, (h,), 0))))
    (J, X), (Ja, Xa) = both(xs, hs)
    assert J.shape == (3, n, n) and X.shape == (3, n, m)
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)


def test_linear_rnn_jacobian_is_W():
    """Pascanu et al. 2013 §2.1: for the linear RNN the step Jacobian is W_hh exactly."""
    cell = gs.cells.make("rnn-linear", 3, 5, key=jax.random.key(2), dtype=jnp.float64)
    J, X = cell.jacobian(jnp.ones(3), (jnp.ones(5),), 0)
    np.testing.assert_array_equal(J, cell.weight_hh)
    np.testing.assert_array_equal(X, cell.weight_ih)


def test_gamma_values():
    """Pascanu's γ = sup|φ'|: 1 for tanh/relu/leaky/elu/linear, 1/4 for the sigmoid."""
    want = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "leaky-relu": 1.0, "elu": 1.0, "linear": 1.0}
    for act, g in want.items():
        assert gs.cells.make(f"rnn-{act}", 2, 3, key=jax.random.key(0)).gamma == g


# --- init facts ----------------------------------------------------------------------------------


def test_irnn_init_identity_and_zero_bias():
    cell = gs.cells.make("irnn", 3, 7, key=jax.random.key(1), dtype=jnp.float64)
    np.testing.assert_array_equal(cell.weight_hh, np.eye(7))
    np.testing.assert_array_equal(cell.bias_ih, 0.0)
    np.testing.assert_array_equal(cell.bias_hh, 0.0)
    assert cell.activation == "relu"
    scaled = gs.cells.make("irnn", 3, 7, key=jax.random.key(1), scale=0.01, dtype=jnp.float64)
    np.testing.assert_array_equal(scaled.weight_hh, 0.01 * np.eye(7))


def test_irnn_all_active_jacobian_is_identity():
    """IRNN (Le et al. 2015): with every pre-activation > 0 the IRNN step Jacobian is I."""
    cell = gs.cells.make("irnn", 3, 5, key=jax.random.key(1), dtype=jnp.float64)
    h = jnp.full((5,), 2.0)  # input weights are ~1e-3, so a = h + W x > 0
    J, _ = cell.jacobian(jnp.ones(3), (h,), 0)
    np.testing.assert_array_equal(J, np.eye(5))


def test_recurrent_inits():
    n, k = 16, jax.random.key(4)
    ident = gs.cells.make("rnn-tanh", 2, n, key=k, recurrent_init="identity", gain=0.5, dtype=jnp.float64)
    np.testing.assert_array_equal(ident.weight_hh, 0.5 * np.eye(n))
    orth = gs.cells.make("rnn-tanh", 2, n, key=k, recurrent_init="orthogonal", gain=1.5, dtype=jnp.float64)
    W = np.asarray(orth.weight_hh)
    np.testing.assert_allclose(W.T @ W, 2.25 * np.eye(n), atol=1e-12)
    uni = gs.cells.make("rnn-tanh", 2, n, key=k, dtype=jnp.float64)
    assert np.abs(uni.weight_hh).max() <= 1 / np.sqrt(n)  # PyTorch's U(±1/√n)
    nob = gs.cells.make("rnn-tanh", 2, n, key=k, bias=False, dtype=jnp.float64)
    np.testing.assert_array_equal(nob.bias_ih, 0.0)
    np.testing.assert_array_equal(nob.bias_hh, 0.0)
