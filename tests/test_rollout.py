"""`rollout` and `Trajectory`: S_0..S_T, state0 handling, aux, dtypes.

The reference is a plain Python loop of single cell calls (no scan, no jit, no vmap).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs


class LSTMState(NamedTuple):
    h: jax.Array
    c: jax.Array


def _loop(cell, xs, state):
    states, auxes = [tuple(state)], []
    for x in xs:
        state, aux = cell(jnp.asarray(x), tuple(state))
        states.append(tuple(state))
        auxes.append(aux)
    return states, auxes


def test_trajectory_holds_T_plus_one_states():
    cell = gs.cells.make("lstm", 3, 4, key=jax.random.key(0), dtype=jnp.float64)
    rng = np.random.default_rng(0)
    T = 7
    xs = rng.normal(size=(T, 3))
    s0 = (jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.normal(size=4)))
    traj = gs.rollout(cell, xs, s0)
    assert traj.blocks == ("h", "c") and traj.length == T
    assert traj["h"].shape == (T + 1, 4) and traj["c"].shape == (T + 1, 4)
    assert traj.flat.shape == (T + 1, 8)
    states, auxes = _loop(cell, xs, s0)
    for t in range(T + 1):  # S_0 is the initial state, S_t the state after consuming x_t
        np.testing.assert_allclose(traj["h"][t], states[t][0], rtol=0, atol=1e-14)
        np.testing.assert_allclose(traj["c"][t], states[t][1], rtol=0, atol=1e-14)
        np.testing.assert_allclose(traj.flat[t], np.concatenate(states[t]), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(traj.final[0], traj["h"][-1])
    np.testing.assert_array_equal(traj.final[1], traj["c"][-1])
    # aux: one entry per step 1..T
    assert set(traj.aux) >= {"i", "f", "g", "o"}
    for k in ("i", "f", "g", "o"):
        assert traj.aux[k].shape == (T, 4)
        for t in range(T):
            np.testing.assert_allclose(traj.aux[k][t], auxes[t][k], rtol=0, atol=1e-14)
    with pytest.raises(KeyError, match="'x'"):
        traj["x"]


def test_default_state0_is_zero():
    cell = gs.cells.make("rnn-tanh", 2, 3, key=jax.random.key(1), dtype=jnp.float64)
    traj = gs.rollout(cell, np.ones((4, 2)))
    np.testing.assert_array_equal(traj["h"][0], 0.0)
    states, _ = _loop(cell, np.ones((4, 2)), (jnp.zeros(3),))
    np.testing.assert_allclose(traj["h"][-1], states[-1][0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("form", ["tuple", "list", "namedtuple"])
def test_state0_forms_are_honoured(form):
    cell = gs.cells.make("lstm", 2, 3, key=jax.random.key(2), dtype=jnp.float64)
    h0, c0 = jnp.array([0.1, -0.2, 0.3]), jnp.array([1.0, 2.0, -1.0])
    s0 = {"tuple": (h0, c0), "list": [h0, c0], "namedtuple": LSTMState(h0, c0)}[form]
    traj = gs.rollout(cell, np.ones((5, 2)), s0)
    np.testing.assert_array_equal(traj["h"][0], h0)
    np.testing.assert_array_equal(traj["c"][0], c0)
    states, _ = _loop(cell, np.ones((5, 2)), (h0, c0))
    np.testing.assert_allclose(traj["c"][-1], states[-1][1], rtol=0, atol=1e-14)


def test_single_block_state0_may_be_a_bare_array():
    cell = gs.cells.make("rnn-relu", 2, 3, key=jax.random.key(3), dtype=jnp.float64)
    h0 = np.array([0.5, 0.0, 1.5])
    a = gs.rollout(cell, np.ones((3, 2)), h0)
    b = gs.rollout(cell, np.ones((3, 2)), (h0,))
    np.testing.assert_array_equal(a["h"], b["h"])
    np.testing.assert_array_equal(a["h"][0], h0)


def test_batched_rollout_and_batched_state0():
    cell = gs.cells.make("lstm", 3, 4, key=jax.random.key(4), dtype=jnp.float64)
    rng = np.random.default_rng(1)
    B, T = 3, 6
    xs = rng.normal(size=(B, T, 3))
    s0 = LSTMState(jnp.asarray(rng.normal(size=(B, 4))), jnp.asarray(rng.normal(size=(B, 4))))
    traj = gs.rollout(cell, xs, s0)
    assert traj["h"].shape == (B, T + 1, 4) and traj.aux["f"].shape == (B, T, 4)
    assert traj.length == T and traj.flat.shape == (B, T + 1, 8)
    for b in range(B):
        states, _ = _loop(cell, xs[b], (s0.h[b], s0.c[b]))
        np.testing.assert_allclose(traj["c"][b, -1], states[-1][1], rtol=0, atol=1e-14)
        np.testing.assert_array_equal(traj["h"][b, 0], s0.h[b])


@pytest.mark.parametrize("cell_dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("xs_dtype", [np.float32, np.float64, np.int64])
def test_dtypes_follow_the_model(cell_dtype, xs_dtype):
    cell = gs.cells.make("lstm", 2, 3, key=jax.random.key(5), dtype=cell_dtype)
    traj = gs.rollout(cell, np.ones((4, 2), xs_dtype), (np.zeros(3, np.float64), np.zeros(3, np.float32)))
    for s in traj.states:
        assert s.dtype == cell_dtype
    for v in traj.aux.values():
        assert v.dtype == cell_dtype


def test_float32_and_float64_agree_to_float32_precision():
    c64 = gs.cells.make("lstm", 3, 5, key=jax.random.key(6), dtype=jnp.float64)
    c32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), c64)
    xs = np.random.default_rng(2).normal(size=(15, 3))
    np.testing.assert_allclose(gs.rollout(c32, xs)["h"], gs.rollout(c64, xs)["h"], rtol=0, atol=1e-6)


def test_trajectory_is_a_pytree():
    cell = gs.cells.make("rnn-tanh", 2, 3, key=jax.random.key(7))
    traj = gs.rollout(cell, np.ones((4, 2), np.float32))
    leaves, tree = jax.tree_util.tree_flatten(traj)
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert back.blocks == traj.blocks
    np.testing.assert_array_equal(back["h"], traj["h"])


def test_rollout_under_user_jit_vmap_and_grad():
    cell = gs.cells.make("lstm", 2, 3, key=jax.random.key(8), dtype=jnp.float64)
    xs = jnp.asarray(np.random.default_rng(3).normal(size=(4, 5, 2)))

    def final_h(cell, x):
        return gs.rollout(cell, x).final[0]

    eager = gs.rollout(cell, xs).final[0]
    np.testing.assert_allclose(jax.jit(final_h)(cell, xs), eager, rtol=0, atol=1e-14)
    np.testing.assert_allclose(jax.vmap(final_h, in_axes=(None, 0))(cell, xs), eager, rtol=0, atol=1e-14)
    # grad wrt the inputs against a central finite difference (float64)
    g = jax.grad(lambda x: jnp.sum(final_h(cell, x)))(xs[0])
    e = np.zeros((5, 2))
    e[1, 0] = 1e-6
    fd = (jnp.sum(final_h(cell, xs[0] + e)) - jnp.sum(final_h(cell, xs[0] - e))) / 2e-6
    assert g[1, 0] == pytest.approx(float(fd), rel=1e-6)
