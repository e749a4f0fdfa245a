"""LSTM family against independent references.

* ``lstm`` (with and without ``proj_size``) against ``torch.nn.LSTM`` with the same weights copied in;
* ``lstm-nofg`` (1997 CEC, Hochreiter & Schmidhuber 1997) and ``lstm-peephole`` (Sak et al. 2014: i, f peek
  at c_{t-1}, o at c_t) against float64 NumPy loops written here from the equations;
* analytic ``(h, c)`` Jacobians against forward-mode autodiff, and the W_hh = 0 forget highway (Gers et al. 2000);
* forget-bias and chrono initialisation (gate order i, f, g, o: f is the SECOND block).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradscope as gs
from gradscope.cells._base import autodiff_jacobians

torch.set_num_threads(1)

TOL = {jnp.float32: 1e-6, jnp.float64: 1e-12}
SIZES = [(3, 5, 12), (1, 8, 17), (6, 4, 10)]  # (input_size, hidden_size, T)


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def _f64(*arrays):
    return tuple(np.asarray(a, np.float64) for a in arrays)


def _data(m, sizes, T, seed, dtype):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(T, m)).astype(dtype)
    return xs, tuple((0.5 * rng.normal(size=(k,))).astype(dtype) for k in sizes)


# --- torch.nn.LSTM -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("m,n,T", SIZES)
@pytest.mark.parametrize("proj", [0, 2])
def test_matches_torch_lstm(proj, m, n, T, dtype):
    cell = gs.cells.make("lstm", m, n, key=jax.random.key(n + 10 * m), dtype=dtype, proj_size=proj)
    p = proj or n
    assert cell.block_sizes == (p, n)
    xs, (h0, c0) = _data(m, (p, n), T, seed=T + proj, dtype=np.dtype(dtype))
    traj = gs.rollout(cell, xs, (h0, c0))

    tdt = torch.float32 if dtype == jnp.float32 else torch.float64
    net = torch.nn.LSTM(m, n, proj_size=proj).to(tdt)
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (["weight_hr"] if proj else [])
    with torch.no_grad():
        for name in names:
            getattr(net, f"{name}_l0").copy_(torch.from_numpy(np.array(getattr(cell, name))))
        out, (hn, cn) = net(torch.from_numpy(xs), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(traj["h"][1:]), out.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(traj.final[0]), hn[0].numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(traj.final[1]), cn[0].numpy(), rtol=tol, atol=tol)
    assert traj["c"].dtype == dtype


# --- NumPy references ------------------------------------------------------------------------------


def _np_lstm_nofg(cell, xs, h, c):
    """Hochreiter & Schmidhuber 1997: s_c(t) = s_c(t-1) + y_in g(net_c); y_c = y_out h(s_c). Gates i, g, o."""
    W_ih, W_hh, b_ih, b_hh, xs, h, c = _f64(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, xs, h, c)
    n = h.shape[0]
    hs, cs = [h], [c]
    for x in xs:
        z = W_ih @ x + b_ih + W_hh @ h + b_hh
        i, g, o = _sig(z[:n]), np.tanh(z[n : 2 * n]), _sig(z[2 * n :])
        c = c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def _np_lstm_peephole(cell, xs, m_prev, c):
    """Sak et al. 2014's equations, diagonal W_ic, W_fc, W_oc; gate blocks i, f, g, o."""
    W_ih, W_hh, b_ih, b_hh, w_ci, w_cf, w_co, xs, m_prev, c = _f64(
        cell.weight_ih,
        cell.weight_hh,
        cell.bias_ih,
        cell.bias_hh,
        cell.weight_ci,
        cell.weight_cf,
        cell.weight_co,
        xs,
        m_prev,
        c,
    )
    n = c.shape[0]
    hs, cs = [m_prev], [c]
    for x in xs:
        z = W_ih @ x + b_ih + W_hh @ m_prev + b_hh
        i = _sig(z[:n] + w_ci * c)
        f = _sig(z[n : 2 * n] + w_cf * c)
        c = f * c + i * np.tanh(z[2 * n : 3 * n])
        o = _sig(z[3 * n :] + w_co * c)  # the output gate peeks at the *current* c_t
        m_prev = o * np.tanh(c)
        hs.append(m_prev)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("m,n,T", SIZES[:2])
@pytest.mark.parametrize("name,ref", [("lstm-nofg", _np_lstm_nofg), ("lstm-peephole", _np_lstm_peephole)])
def test_matches_numpy_reference(name, ref, m, n, T, dtype):
    cell = gs.cells.make(name, m, n, key=jax.random.key(3 * n + m), dtype=dtype)
    xs, (h0, c0) = _data(m, (n, n), T, seed=5 * T, dtype=np.dtype(dtype))
    hs, cs = ref(cell, xs, h0, c0)
    traj = gs.rollout(cell, xs, (h0, c0))
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(traj["h"], np.float64), hs, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(traj["c"], np.float64), cs, rtol=tol, atol=tol)


def test_peephole_weights_are_diagonal_vectors():
    cell = gs.cells.make("lstm-peephole", 3, 5, key=jax.random.key(0))
    assert cell.weight_ci.shape == cell.weight_cf.shape == cell.weight_co.shape == (5,)
    assert cell.weight_ih.shape == (20, 3) and cell.weight_hh.shape == (20, 5)


def test_nofg_layout():
    cell = gs.cells.make("lstm-nofg", 3, 5, key=jax.random.key(0))
    assert cell.weight_ih.shape == (15, 3) and cell.weight_hh.shape == (15, 5) and cell.bias_ih.shape == (15,)


# --- analytic Jacobians --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,opts",
    [
        ("lstm", {}),
        ("lstm", {"proj_size": 3}),
        ("lstm", {"forget_bias": 1.0}),
        ("lstm-nofg", {}),
        ("lstm-peephole", {}),
        ("lstm-peephole", {"chrono": 50}),
    ],
)
def test_analytic_jacobian_matches_autodiff(name, opts):
    m, n = 4, 6
    cell = gs.cells.make(name, m, n, key=jax.random.key(13), dtype=jnp.float64, **opts)
    rng = np.random.default_rng(9)
    xs = jnp.asarray(rng.normal(size=(3, m)))
    states = tuple(jnp.asarray(rng.normal(size=(3, k))) for k in cell.block_sizes)
    both = jax.jit(jax.vmap(lambda x, s: (cell.jacobian(x, s, 0), autodiff_jacobians(cell, x, s, 0))))
    (J, X), (Ja, Xa) = both(xs, states)
    d = cell.state_size
    assert J.shape == (3, d, d) and X.shape == (3, d, m)
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)


def test_forget_highway_with_zero_recurrent_weights():
    """Gers et al. 2000: with W_hh = 0, ∂c_t/∂c_{t-1} = diag(f_t) exactly; the 1997 cell has the CEC (= I,
    Hochreiter & Schmidhuber 1997)."""
    import dataclasses

    cell = gs.cells.make("lstm", 3, 4, key=jax.random.key(2), dtype=jnp.float64, forget_bias=1.0)
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros_like(cell.weight_hh))
    x, h, c = jnp.ones(3), jnp.full((4,), 0.3), jnp.full((4,), -0.2)
    J, _ = jax.jit(cell.jacobian)(x, (h, c), 0)
    z = np.asarray(cell.weight_ih @ x + cell.bias_ih + cell.bias_hh)
    f = _sig(z[4:8])  # f is the SECOND gate block
    np.testing.assert_allclose(J[4:, 4:], np.diag(f), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(J[:, :4], 0.0)  # nothing flows through h when W_hh = 0

    nofg = gs.cells.make("lstm-nofg", 3, 4, key=jax.random.key(2), dtype=jnp.float64)
    Jn, _ = jax.jit(nofg.jacobian)(x, (h, c), 0)
    np.testing.assert_array_equal(Jn[4:, 4:], np.eye(4))


# --- initialisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole"])
@pytest.mark.parametrize("b", [1.0, 2.5, -0.75])
def test_forget_bias_sets_total_second_block(name, b):
    n = 6
    cell = gs.cells.make(name, 3, n, key=jax.random.key(1), forget_bias=b)
    total = np.asarray(cell.bias_ih) + np.asarray(cell.bias_hh)
    np.testing.assert_array_equal(total[n : 2 * n], np.float32(b))  # exactly b in the f block
    plain = gs.cells.make(name, 3, n, key=jax.random.key(1))
    plain_total = np.asarray(plain.bias_ih) + np.asarray(plain.bias_hh)
    # the other blocks (i, g, o) keep their PyTorch init
    np.testing.assert_array_equal(np.delete(total, np.s_[n : 2 * n]), np.delete(plain_total, np.s_[n : 2 * n]))


def test_forget_bias_reaches_the_f_gate():
    """The bias set by forget_bias is the one that drives the gate reported as ``f``."""
    cell = gs.cells.make("lstm", 2, 5, key=jax.random.key(1), forget_bias=30.0, dtype=jnp.float64)
    _, aux = cell(jnp.zeros(2), (jnp.zeros(5), jnp.zeros(5)))
    np.testing.assert_allclose(aux["f"], 1.0, atol=1e-12)
    assert np.all(np.asarray(aux["i"]) < 0.9)


@pytest.mark.parametrize("name", ["lstm", "lstm-peephole"])
@pytest.mark.parametrize("T", [10, 1000])
def test_chrono_init(name, T):
    n = 64
    cell = gs.cells.make(name, 3, n, key=jax.random.key(5), chrono=T, dtype=jnp.float64)
    total = np.asarray(cell.bias_ih) + np.asarray(cell.bias_hh)
    b_i, b_f = total[:n], total[n : 2 * n]
    assert np.all(b_f >= 0.0) and np.all(b_f <= np.log(T - 1))
    np.testing.assert_array_equal(b_i, -b_f)
    assert np.ptp(b_f) > 0  # drawn, not constant


@pytest.mark.parametrize("opts", [{"forget_bias": 1.0}, {"chrono": 50.0}], ids=["forget_bias", "chrono"])
def test_bias_overrides_the_same_built_concretely_and_traced(opts):
    """The overrides are written on the host for concrete weights (no compiled index update) and with
    ``.at[].set`` under a trace (`with_rows`): the same bits either way, and the rows they set."""
    n, key = 5, jax.random.key(7)
    cell = gs.cells.make("lstm", 3, n, key=key, **opts)
    traced = jax.jit(lambda k: gs.cells.make("lstm", 3, n, key=k, **opts))(key)
    for field in ("bias_ih", "bias_hh"):
        a, b = np.asarray(getattr(cell, field)), np.asarray(getattr(traced, field))
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32)), field
    bi, bf = np.asarray(cell.bias_ih), np.asarray(cell.bias_hh)
    np.testing.assert_array_equal(bf[n : 2 * n], 0.0)
    if "forget_bias" in opts:
        np.testing.assert_array_equal(bi[n : 2 * n], 1.0)
    else:  # chrono (Tallec & Ollivier 2018): b_f = log U[1, T_max - 1], b_i = -b_f
        assert np.all((bi[n : 2 * n] >= 0) & (bi[n : 2 * n] <= np.log(49.0) + 1e-6))
        np.testing.assert_array_equal(bi[:n], -bi[n : 2 * n])
        np.testing.assert_array_equal(bf[:n], 0.0)
