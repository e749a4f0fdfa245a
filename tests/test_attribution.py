"""Attribution by lag against an independent autodiff oracle: give every step its own copy of the
parameters, so jax.jacrev of the per-step losses yields each term ∂E_t/∂θ_k of Pascanu's sum
(eqs. 3–5) separately; grouped by lag they must sum to jax.grad of the total loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs, oracle

from gradscope import engine
from gradscope._errors import ConfigError
from gradscope.cells._base import flatten_state, unflatten_state


def _terms(model, xs, es):
    """G[i, j] = ∂⟨e_i, S_{i+1}⟩/∂θ_j (flat), θ_j the parameter copy used by step j; and jax.grad of E."""
    pxs = jnp.asarray(xs)
    T = pxs.shape[0]
    stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (T,) + a.shape), model)

    def losses(params):
        def body(s, j):
            m = jax.tree.map(lambda a: a[j], params)
            s2 = flatten_state(m.step(pxs[j], unflatten_state(m, s), j)[0])
            return s2, s2

        _, ss = jax.lax.scan(body, jnp.zeros((model.state_size,)), jnp.arange(T))
        return jnp.sum(ss * es, axis=-1)  # (T,): E_i = ⟨e_i, S_{i+1}⟩

    G = jax.jit(jax.jacrev(losses))(stacked)
    G = np.concatenate([np.asarray(a, np.float64).reshape(T, T, -1) for a in jax.tree_util.tree_leaves(G)], axis=-1)

    def total(m):
        return jnp.sum(losses(jax.tree.map(lambda a: jnp.broadcast_to(a, (T,) + a.shape), m)))

    g = jax.grad(total)(model)
    g = np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree_util.tree_leaves(g)])
    return G, g


@pytest.mark.parametrize("name", ["rnn-tanh", "lstm"])
def test_by_lag_contributions_sum_to_the_gradient(name):
    model = build(name, 3, 3)
    T = 6
    xs = inputs(T, 3, seed=11)
    es = np.random.default_rng(3).normal(size=(T, model.state_size))
    at = engine.attribution(model, xs, cotangents=es)
    G, g = _terms(model, xs, es)
    by_lag = np.stack([sum(G[i, i - tau] for i in range(tau, T)) for tau in range(T)])  # τ = i − j
    # the oracle itself: terms of step copies add up to the gradient of the shared-parameter loss
    np.testing.assert_allclose(by_lag.sum(axis=0), g, rtol=1e-10, atol=1e-12)
    # terms with j > i vanish (causality)
    assert all(np.all(G[i, j] == 0) for i in range(T) for j in range(i + 1, T))
    np.testing.assert_allclose(np.asarray(at.log10_by_lag), np.log10(np.linalg.norm(by_lag, axis=1)), atol=1e-9)
    np.testing.assert_allclose(float(at.log10_total), np.log10(np.linalg.norm(g)), atol=1e-10)


def test_block_time_norms_are_the_gradient_wrt_the_state():
    model = build("lstm", 3, 3)
    T = 5
    xs = inputs(T, 3, seed=12)
    es = np.random.default_rng(4).normal(size=(T, 6))
    at = engine.attribution(model, xs, cotangents=es)
    _, _, P, _, _ = oracle(model, xs)
    assert at.log10_block_time.shape == (T + 1, 2) and at.blocks == ("h", "c")
    for t in range(T + 1):
        # ∂E/∂S_t = e at S_t (t ≥ 1) + Σ_{j ≥ t} (∂S_{j+1}/∂S_t)ᵀ e_j,  E = Σ_j ⟨e_j, S_{j+1}⟩
        delta = (es[t - 1] if t >= 1 else 0) + sum(P[j + 1, t].T @ es[j] for j in range(t, T))
        np.testing.assert_allclose(
            np.asarray(at.log10_block_time[t]),
            [np.log10(np.linalg.norm(delta[:3])), np.log10(np.linalg.norm(delta[3:]))],
            atol=1e-10,
            err_msg=f"t={t}",
        )


def test_default_readout_is_a_unit_vector_on_the_output():
    model = build("lstm", 3, 3)
    T = 4
    xs = inputs(T, 3, seed=1)
    for readout in ("every", "last"):
        at = engine.attribution(model, xs, readout=readout)
        v = jax.random.normal(jax.random.key(0), (3,), jnp.float64)
        v = np.asarray(v / jnp.linalg.norm(v))
        es = np.zeros((T, 6))
        es[:, :3] = v
        if readout == "last":
            es[:-1] = 0
        ref = engine.attribution(model, xs, cotangents=es)
        np.testing.assert_allclose(np.asarray(at.log10_by_lag), np.asarray(ref.log10_by_lag), atol=1e-12)
        np.testing.assert_allclose(float(at.log10_total), float(ref.log10_total), atol=1e-12)


def test_total_gradient_survives_while_long_lags_vanish():
    # the documents' point (Pascanu et al. 2013 §2): a contracting tanh RNN has a healthy total gradient
    # made of short-range terms; the long-range contributions are many orders smaller
    model = build("rnn-tanh", 3, 8, gain=0.5)
    T = 40
    at = engine.attribution(model, inputs(T, 3, seed=2))
    by_lag, total = np.asarray(at.log10_by_lag), float(at.log10_total)
    assert total > by_lag[0] - 1  # the total is as large as the lag-0 part
    assert by_lag[-1] < by_lag[0] - 8  # lag T−1 contributes < 1e−8 of it
    assert by_lag[-1] < total - 8
    assert np.all(np.diff(by_lag[5:]) < 0)  # decays with lag


def test_batched_attribution_equals_per_sequence():
    model = build("gru", 3, 3)
    xs = inputs(5, 3, B=2, seed=5)
    at = engine.attribution(model, xs)
    for b in range(2):
        one = engine.attribution(model, xs[b])
        np.testing.assert_allclose(np.asarray(at.log10_by_lag[b]), np.asarray(one.log10_by_lag), atol=1e-12)
        np.testing.assert_allclose(np.asarray(at.log10_block_time[b]), np.asarray(one.log10_block_time), atol=1e-12)


def test_bad_options_raise_config_error():
    model = build("rnn-tanh", 3, 4)
    xs = inputs(4, 3)
    with pytest.raises(ConfigError, match="readout"):
        engine.attribution(model, xs, readout="first")
    with pytest.raises(ConfigError, match="cotangents"):
        engine.attribution(model, xs, cotangents=np.zeros((3, 4)))
