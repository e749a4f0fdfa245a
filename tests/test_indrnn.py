"""IndRNN (Li et al. 2018) against independent references.

* the cell against a float64 NumPy loop of ``h_t = φ(W x_t + u ⊙ h_{t-1} + b)`` (Li et al. 2018, eq. 2);
* the step Jacobian is diagonal with entries ``u_n φ'(a_n)`` (eq. 4), against autodiff;
* ``∂h_T/∂h_k = u^{T-k}`` exactly for relu with all units active (eq. 4), against jacrev of the unrolled map;
* the bound ``|u| ≤ γ^{1/T}`` from ``max_length`` and ``clip_recurrent``;
* the parallel rollout (an associative scan of clip-affine maps) against the same NumPy loop, in float64
  to 1e-12, including negative u, nonzero h_0, T = 1, and the overflow guard's fallback on the loop.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope.cells._base import autodiff_jacobians

TOL = {jnp.float32: 1e-6, jnp.float64: 1e-12}


def _np_indrnn(cell, xs, h):
    W, u, b, xs, h = (np.asarray(a, np.float64) for a in (cell.weight_ih, cell.weight_hh_diag, cell.bias, xs, h))
    act = {"relu": lambda a: np.maximum(a, 0.0), "tanh": np.tanh, "linear": lambda a: a}[cell.activation]
    hs = [h]
    for x in xs:
        h = act(W @ x + u * h + b)
        hs.append(h)
    return np.stack(hs)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("m,n,T", [(3, 5, 12), (2, 9, 18)])
def test_matches_numpy_reference(m, n, T, act, dtype):
    cell = gs.cells.make("indrnn", m, n, key=jax.random.key(n), activation=act, max_length=T, dtype=dtype)
    # give the zero-initialised bias some values so that the reference exercises it
    rng = np.random.default_rng(T)
    cell = dataclasses.replace(cell, bias=jnp.asarray(0.1 * rng.normal(size=n), dtype))
    xs = rng.normal(size=(T, m)).astype(np.dtype(dtype))
    h0 = np.abs(rng.normal(size=n)).astype(np.dtype(dtype))
    traj = gs.rollout(cell, xs, h0)
    tol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(traj["h"], np.float64), _np_indrnn(cell, xs, h0), rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ["relu", "tanh", "elu"])
def test_jacobian_is_diagonal_and_matches_autodiff(act):
    m, n = 4, 7
    cell = gs.cells.make("indrnn", m, n, key=jax.random.key(3), activation=act, u_min=-1.0, dtype=jnp.float64)
    assert cell.structure == "diagonal"
    rng = np.random.default_rng(1)
    xs, hs = jnp.asarray(rng.normal(size=(3, m))), jnp.asarray(rng.normal(size=(3, n)))

    def all_forms(x, h):
        return cell.jacobian(x, (h,), 0), autodiff_jacobians(cell, x, (h,), 0), cell.jacobian_diag(x, (h,), 0)

    (J, X), (Ja, Xa), (diag, Xd) = jax.jit(jax.vmap(all_forms))(xs, hs)
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Xd, Xa, rtol=0, atol=1e-12)
    for k in range(3):
        np.testing.assert_allclose(diag[k], np.diag(Ja[k]), rtol=0, atol=1e-12)
        off = np.asarray(Ja[k]) - np.diag(np.diag(Ja[k]))
        np.testing.assert_array_equal(off, 0.0)  # neurons are independent within a layer


def test_lag_jacobian_is_u_power_when_all_active():
    """Li et al. 2018 eq. 4: relu with every unit active gives ∂h_T/∂h_0 = diag(u^T) exactly."""
    T, m, n = 9, 2, 5
    cell = gs.cells.make("indrnn", m, n, key=jax.random.key(8), u_min=0.5, u_max=1.2, dtype=jnp.float64)
    xs = jnp.zeros((T, m))
    h0 = jnp.full((n,), 1.0)  # positive states, zero input, zero bias: a = u h > 0 at every step

    def unrolled(h):
        return gs.rollout(cell, xs, (h,)).final[0]

    J = jax.jacrev(unrolled)(h0)
    np.testing.assert_allclose(J, np.diag(np.asarray(cell.weight_hh_diag) ** T), rtol=1e-13, atol=0)


@pytest.mark.parametrize("T", [100, 1000, 5000])
def test_max_length_bounds_u(T):
    n = 512
    cell = gs.cells.make("indrnn", 2, n, key=jax.random.key(T), max_length=T, dtype=jnp.float64)
    u = np.asarray(cell.weight_hh_diag)
    bound = 2.0 ** (1.0 / T)
    assert np.all(np.abs(u) <= bound)
    assert u.max() > 1.0 - 0.05  # drawn from U(0, 2^(1/T)): the upper range is used
    assert gs.cells.recurrent_bound(T) == pytest.approx(bound, rel=1e-15)
    cell10 = gs.cells.make("indrnn", 2, n, key=jax.random.key(T), max_length=T, gamma=10.0, dtype=jnp.float64)
    assert np.all(np.abs(np.asarray(cell10.weight_hh_diag)) <= 10.0 ** (1.0 / T))


def test_recurrent_bound_published_values():
    """Li et al. 2018 §3.1: adding problem γ = 2 → T=100: 1.00696, T=1000: 1.000693, T=5000: 1.0001386."""
    assert gs.cells.recurrent_bound(100) == pytest.approx(1.00696, abs=1e-5)
    assert gs.cells.recurrent_bound(1000) == pytest.approx(1.000693, abs=1e-6)
    assert gs.cells.recurrent_bound(5000) == pytest.approx(1.0001386, abs=1e-7)


def test_u_min_u_max_and_input_init():
    cell = gs.cells.make("indrnn", 4, 256, key=jax.random.key(0), u_min=0.9, u_max=1.1, dtype=jnp.float64)
    u = np.asarray(cell.weight_hh_diag)
    assert u.min() >= 0.9 and u.max() <= 1.1
    np.testing.assert_array_equal(cell.bias, 0.0)
    assert cell.weight_ih.shape == (256, 4)


def test_clip_recurrent_clips():
    import dataclasses

    cell = gs.cells.make("indrnn", 2, 6, key=jax.random.key(0), dtype=jnp.float64)
    u = jnp.array([-3.0, -1.0, -0.2, 0.0, 0.7, 5.0])
    clipped = gs.cells.clip_recurrent(dataclasses.replace(cell, weight_hh_diag=u), 1.0)
    np.testing.assert_array_equal(clipped.weight_hh_diag, [-1.0, -1.0, -0.2, 0.0, 0.7, 1.0])
    # every other weight is untouched, and the result is still an IndRNN
    assert isinstance(clipped, gs.cells.IndRNN)
    np.testing.assert_array_equal(clipped.weight_ih, cell.weight_ih)
    np.testing.assert_array_equal(clipped.bias, cell.bias)
    b = gs.cells.recurrent_bound(100)
    clipped = gs.cells.clip_recurrent(dataclasses.replace(cell, weight_hh_diag=u), b)
    assert np.abs(np.asarray(clipped.weight_hh_diag)).max() == pytest.approx(b)


def test_stack_of_indrnn_and_lstm_jacobian_matches_autodiff():
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    net = gs.Stack(
        (
            gs.cells.make("indrnn", 3, 5, key=k1, u_min=-1.0, dtype=jnp.float64),
            gs.cells.make("lstm", 5, 4, key=k2, dtype=jnp.float64),
            gs.cells.make("indrnn", 4, 6, key=k3, activation="tanh", dtype=jnp.float64),
        )
    )
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=3))
    state = tuple(jnp.asarray(rng.normal(size=k)) for k in net.block_sizes)
    (J, X), (Ja, Xa) = jax.jit(lambda x, s: (net.jacobian(x, s, 0), autodiff_jacobians(net, x, s, 0)))(x, state)
    assert J.shape == (19, 19) and X.shape == (19, 3)
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)


def _scan_variants(cell):
    return dataclasses.replace(cell, scan="parallel"), dataclasses.replace(cell, scan="sequential")


@pytest.mark.parametrize("act", ["relu", "linear"])
@pytest.mark.parametrize("T", [1, 2, 37, 300])
def test_parallel_rollout_matches_numpy_loop(act, T):
    n, m, B = 12, 3, 3
    rng = np.random.default_rng(T)
    cell = gs.cells.make(
        "indrnn", m, n, key=jax.random.key(T), activation=act, dtype=jnp.float64, u_min=-1.1, u_max=1.1
    )
    # u of both signs (negative u swaps the clip bounds), |u| slightly above 1 on some units, a bias
    cell = dataclasses.replace(
        cell, weight_hh_diag=jnp.asarray(rng.uniform(-1.1, 1.1, n)), bias=jnp.asarray(0.3 * rng.normal(size=n))
    )
    xs = rng.normal(size=(B, T, m))
    h0 = rng.normal(size=(B, n))
    par, seq = _scan_variants(cell)
    assert bool(gs.cells._parallel.parallel_safe(par.weight_hh_diag, T))  # the parallel branch is under test
    tp, ts = gs.rollout(par, xs, (h0,)), gs.rollout(seq, xs, (h0,))
    for b in range(B):
        ref = _np_indrnn(cell, xs[b], h0[b])
        scale = max(1.0, np.abs(ref).max())
        np.testing.assert_allclose(np.asarray(tp.states[0][b]), ref, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(
        np.asarray(tp.aux["a"]),
        np.asarray(ts.aux["a"]),
        rtol=0,
        atol=1e-12 * max(1.0, float(jnp.abs(ts.aux["a"]).max())),
    )
    if act == "relu":  # the relu zeros are exact, not merely small
        np.testing.assert_array_equal(np.asarray(tp.states[0]) == 0, np.asarray(ts.states[0]) == 0)


@pytest.mark.slow
def test_parallel_rollout_falls_back_on_the_loop_where_products_overflow():
    """u = 1.5 over 300 steps: ∏u = 1.5^300 ≈ 1e53 (inf in float32) although every state is 0 (relu of −1)."""
    n, T = 4, 300
    cell = gs.cells.make("indrnn", 1, n, key=jax.random.key(0))
    f32 = jnp.float32
    cell = dataclasses.replace(
        cell,
        weight_ih=jnp.zeros((n, 1), f32),
        weight_hh_diag=jnp.full((n,), 1.5, f32),
        bias=jnp.full((n,), -1.0, f32),
        scan="parallel",
    )
    assert not bool(gs.cells._parallel.parallel_safe(cell.weight_hh_diag, T))
    hs = gs.rollout(cell, jnp.ones((T, 1), f32)).states[0]
    np.testing.assert_array_equal(np.asarray(hs), 0.0)
    # the parallel form alone would have produced inf·0 = NaN here: the guard is what keeps it out
    direct = gs.cells._parallel.clip_affine_states(
        jnp.full((T, n), -1.0, f32), cell.weight_hh_diag, jnp.zeros(n, f32), 0.0, float("inf")
    )
    assert not bool(jnp.all(jnp.isfinite(direct)))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_engine_results_do_not_depend_on_the_scan(act):
    """tanh cannot take the parallel form and falls back bit for bit; relu agrees to float64 rounding."""
    cell = gs.cells.make("indrnn", 2, 8, key=jax.random.key(3), activation=act, dtype=jnp.float64, max_length=40)
    xs = jax.random.normal(jax.random.key(4), (2, 40, 2), jnp.float64)
    par, seq = _scan_variants(cell)
    lp, ls = gs.lag_profile(par, xs), gs.lag_profile(seq, xs)
    if act == "tanh":
        np.testing.assert_array_equal(np.asarray(lp.log10_spectral), np.asarray(ls.log10_spectral))
    else:
        np.testing.assert_allclose(np.asarray(lp.log10_spectral), np.asarray(ls.log10_spectral), atol=1e-10)
    # "auto" is the loop on a CPU (where it is faster): bit for bit the sequential result
    if jax.default_backend() == "cpu":
        la = gs.lag_profile(cell, xs)
        np.testing.assert_array_equal(np.asarray(la.log10_spectral), np.asarray(ls.log10_spectral))


def test_scan_option_is_checked():
    with pytest.raises(gs.ConfigError, match="scan='fast'.*auto, sequential, parallel"):
        gs.cells.make("indrnn", 2, 4, key=jax.random.key(0), scan="fast")
