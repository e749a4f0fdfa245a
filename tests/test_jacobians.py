"""Step Jacobians against autodiff: analytic == jacfwd per step, and their product == jax.jacrev of the
whole unrolled map (float64, 1e-10), for every registered cell, stacks and bidirectional nets.
Plus closed forms: linear RNN W^(t−k) (Pascanu et al. 2013), IRNN identity (Le et al. 2015), IndRNN diagonal
(Li et al. 2018)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs, oracle

from gradscope import engine
from gradscope.cells import make, names
from gradscope.nets import Bidirectional, Stack, stack

TOL = dict(rtol=1e-10, atol=1e-10)
T = 5


def _models():
    out = {n: (lambda n=n: build(n)) for n in names()}
    out["lstm-proj"] = lambda: build("lstm", proj_size=2)
    out["stack-plain"] = lambda: Stack(
        (build("lstm", 3, 4, seed=1), build("gru", 4, 3, seed=2), build("rnn-tanh", 3, 3, seed=3))
    )
    out["stack-residual"] = lambda: stack("rnn-tanh", 3, 3, 3, key=jax.random.key(4), residual=True, dtype=jnp.float64)
    out["stack-residual-lstm"] = lambda: stack("lstm", 3, 3, 2, key=jax.random.key(5), residual=True, dtype=jnp.float64)
    out["bidirectional"] = lambda: Bidirectional(build("lstm", 3, 3, seed=6), build("gru", 3, 2, seed=7))
    return out


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_step_jacobians_match_autodiff_and_products_match_jacrev(name):
    model = MODELS[name]()
    xs = inputs(T, model.input_size)
    sj = engine.step_jacobians(model, xs)
    pxs, S, P, J_ad, Jx_ad = oracle(model, xs)
    d = S.shape[-1]
    assert sj.jac.shape == (T, d, d)
    # analytic (or fallback) step Jacobians == jacfwd of the step, in the state and in the input
    np.testing.assert_allclose(np.asarray(sj.jac), J_ad, **TOL)
    np.testing.assert_allclose(np.asarray(sj.jac_x), Jx_ad, **TOL)
    # every product J[T−1]⋯J[k] (k = 0: the whole map S_0 ↦ S_T) == jacrev of the unrolled map
    Q = np.eye(d)
    for k in reversed(range(T)):
        Q = Q @ np.asarray(sj.jac[k], np.float64)
        np.testing.assert_allclose(Q, P[T, k], **TOL)


def test_batched_step_jacobians_equal_per_sequence():
    model = build("lstm")
    xs = inputs(4, 3, B=3)
    sj = engine.step_jacobians(model, xs)
    assert sj.jac.shape == (3, 4, 8, 8)
    for b in range(3):
        np.testing.assert_allclose(np.asarray(sj.jac[b]), np.asarray(engine.step_jacobians(model, xs[b]).jac), **TOL)


def test_linear_rnn_products_are_powers_of_W():
    # Pascanu et al. 2013 §2.1: h_t = W h_{t−1} + U x_t  ⇒  ∂h_t/∂h_k = W^(t−k); non-normal W on purpose
    n = 4
    rng = np.random.default_rng(0)
    W = np.triu(rng.normal(size=(n, n))) * 0.6
    cell = dataclasses.replace(build("rnn-linear", 2, n), weight_hh=jnp.asarray(W))
    Tn = 7
    sj = np.asarray(engine.step_jacobians(cell, inputs(Tn, 2)).jac)
    for k in range(Tn):
        P = np.eye(n)
        for t in range(k, Tn):
            P = sj[t] @ P
            np.testing.assert_allclose(P, np.linalg.matrix_power(W, t + 1 - k), rtol=1e-12, atol=1e-12)


def _active_irnn(n=5, m=3):
    cell = make("irnn", m, n, key=jax.random.key(0), dtype=jnp.float64)
    return dataclasses.replace(cell, weight_ih=jnp.abs(cell.weight_ih) + 0.1)


def test_irnn_identity_with_all_units_active():
    # IRNN (Le et al. 2015): W_hh = I, b = 0, relu, every pre-activation > 0 ⇒ ∂h_t/∂h_k = I exactly
    cell = _active_irnn()
    xs = np.abs(inputs(9, 3)) + 0.1
    sj = np.asarray(engine.step_jacobians(cell, xs).jac)
    P = np.eye(5)
    for t in range(9):
        np.testing.assert_array_equal(sj[t], np.eye(5))
        P = sj[t] @ P
    np.testing.assert_array_equal(P, np.eye(5))
    lp = engine.lag_profile(cell, xs)
    np.testing.assert_allclose(np.asarray(lp.log10_spectral), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(lp.log10_frobenius), 0.5 * np.log10(5), atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_indrnn_diagonal_closed_form(activation):
    # Li et al. 2018 eq. 4: ∂h_{n,T}/∂h_{n,k} = u_n^(T−k) ∏_{j=k+1}^{T} φ'(a_{n,j}); off-diagonals exactly 0
    n, m, Tn = 6, 3, 12
    cell = make("indrnn", m, n, key=jax.random.key(3), dtype=jnp.float64, activation=activation, u_min=0.5, u_max=1.3)
    if activation == "relu":  # all units active: positive inputs and input weights
        cell = dataclasses.replace(cell, weight_ih=jnp.abs(cell.weight_ih) + 0.05)
        xs = np.abs(inputs(Tn, m)) + 0.1
    else:
        xs = inputs(Tn, m)
    u = np.asarray(cell.weight_hh_diag)
    W, b = np.asarray(cell.weight_ih), np.asarray(cell.bias)
    # float64 NumPy rollout of the recurrence
    h, dphi = np.zeros(n), []
    for t in range(Tn):
        a = W @ xs[t] + u * h + b
        h = np.maximum(a, 0) if activation == "relu" else np.tanh(a)
        dphi.append((a > 0).astype(float) if activation == "relu" else 1 - np.tanh(a) ** 2)
    dphi = np.array(dphi)
    sj = np.asarray(engine.step_jacobians(cell, xs).jac)
    off = sj * (1 - np.eye(n))[None]
    assert np.all(off == 0.0)
    np.testing.assert_allclose(np.diagonal(sj, axis1=1, axis2=2), u[None] * dphi, rtol=1e-12, atol=1e-14)
    lp = engine.lag_profile(cell, xs)
    for k in range(Tn):
        g = u ** (Tn - k) * np.prod(dphi[k:], axis=0)
        if activation == "relu":
            np.testing.assert_allclose(g, u ** (Tn - k), rtol=1e-13)
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.max(np.abs(g))), atol=1e-10)
        np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(g)), atol=1e-10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_trajectory_steps_match_autodiff_and_the_rollout(name):
    """`trajectory_steps` (one program: rollout + every step Jacobian + the direct path) against the oracles:
    the states and gate values of `rollout`, jacfwd of each step, the model's own ``direct_path`` per step."""
    from gradscope._rollout import rollout
    from gradscope.cells._base import unflatten_state
    from gradscope.engine.paths import has_direct_path

    model = MODELS[name]()
    xs = inputs(T, model.input_size)
    direct = has_direct_path(model)
    st = engine.trajectory_steps(model, xs, direct=direct)
    pxs, S, _, J_ad, _ = oracle(model, xs)
    np.testing.assert_allclose(np.asarray(st.S), np.asarray(S), **TOL)
    np.testing.assert_allclose(np.asarray(st.xs), np.asarray(pxs), **TOL)
    np.testing.assert_allclose(np.asarray(st.jac), J_ad, **TOL)
    tr = rollout(model, xs)
    assert sorted(st.trajectory.aux) == sorted(tr.aux)
    for key in tr.aux:
        np.testing.assert_allclose(np.asarray(st.trajectory.aux[key]), np.asarray(tr.aux[key]), **TOL)
    if direct:
        want = [np.asarray(model.direct_path(pxs[k], unflatten_state(model, S[k]), k)) for k in range(T)]
        np.testing.assert_allclose(np.asarray(st.direct), np.stack(want), **TOL)
    else:
        assert st.direct is None


def test_batched_trajectory_steps_equal_per_sequence():
    model = build("gru")
    xs = inputs(4, 3, B=3)
    st = engine.trajectory_steps(model, xs, direct=True)
    assert st.batched and st.jac.shape == (3, 4, 4, 4) and st.direct.shape == (3, 4, 4)
    for b in range(3):
        one = engine.trajectory_steps(model, xs[b], direct=True)
        np.testing.assert_allclose(np.asarray(st.jac[b]), np.asarray(one.jac), **TOL)
        np.testing.assert_allclose(np.asarray(st.direct[b]), np.asarray(one.direct), **TOL)


def test_materialise_fits_counts_batch_length_and_state_squared(monkeypatch):
    from gradscope.engine import jacobians

    model = build("lstm", 3, 4)  # d = 8, float64: 8 · 8 · 8 bytes = 512 bytes per step and sequence
    xs = inputs(10, 3, B=2)
    monkeypatch.setattr(jacobians, "MATERIALISE_MAX_BYTES", 2 * 10 * 512)
    assert engine.materialise_fits(model, xs)
    monkeypatch.setattr(jacobians, "MATERIALISE_MAX_BYTES", 2 * 10 * 512 - 1)
    assert not engine.materialise_fits(model, xs)


@pytest.mark.parametrize("batched", [True, False])
def test_host_chunks_are_the_jacrev_step_jacobians(monkeypatch, batched):
    # chunks of 3 steps over T = 11 (the last padded and cut), a BN cell whose Jacobian depends on t: in
    # order, each J_t the autodiff Jacobian of the step at (x_t, S_t)
    from gradscope.engine import jacobians
    from gradscope.engine._prep import prepare

    model = build("bn-lstm", 3, 3)
    d = sum(model.block_sizes)
    B = 2 if batched else 1
    monkeypatch.setattr(jacobians, "CHUNK_BYTES", 3 * B * d * d * 8)
    xs = inputs(11, 3, seed=3, B=2 if batched else None)
    pxs, S, b = prepare(model, xs)
    chunks = list(jacobians.host_chunks(model, pxs, S, b))
    assert [c.shape for c in chunks] == [(B, 3, d, d)] * 3 + [(B, 2, d, d)]
    got = np.concatenate(chunks, axis=1)
    for i in range(B):
        _, _, _, J, _ = oracle(model, xs[i] if batched else xs)
        np.testing.assert_allclose(got[i], J, **TOL)
