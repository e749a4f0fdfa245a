"""Stack (plain and residual) and Bidirectional against independent compositions.

* a Stack's rollout equals running its layers one after another over whole sequences (residual: the
  identity shortcut ``inp_{l+1} = out_l + inp_l``, as in residual IndRNN, Li et al. 2019);
* a Bidirectional rollout equals a forward rollout and a backward rollout over the reversed sequence;
* the analytic block Jacobians equal autodiff of the flat step map (float64, 1e-12), and their product
  over a trajectory equals `jax.jacrev` of the whole unrolled map.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope.cells._base import autodiff_jacobians, flatten_state, unflatten_state

F64 = jnp.float64


def _mixed_layers(key, m=3):
    k = jax.random.split(key, 3)
    return (
        gs.cells.make("rnn-tanh", m, 5, key=k[0], dtype=F64),
        gs.cells.make("lstm", 5, 6, key=k[1], proj_size=4, dtype=F64),
        gs.cells.make("indrnn", 4, 3, key=k[2], u_min=-1.0, dtype=F64),
    )


def _residual_layers(key, m=3, n=4):
    k = jax.random.split(key, 4)
    return (
        gs.cells.make("rnn-tanh", m, n, key=k[0], dtype=F64),
        gs.cells.make("lstm", n, n, key=k[1], dtype=F64),
        gs.cells.make("indrnn", n, n, key=k[2], activation="tanh", u_min=-1.0, dtype=F64),
        gs.cells.make("lstm-peephole", n, n, key=k[3], dtype=F64),
    )


def _random_state(model, rng):
    return tuple(jnp.asarray(0.7 * rng.normal(size=k)) for k in model.block_sizes)


def _check_jacobian(model, x, state):
    (J, X), (Ja, Xa) = jax.jit(lambda x, s: (model.jacobian(x, s, 0), autodiff_jacobians(model, x, s, 0)))(x, state)
    d = model.state_size
    assert J.shape == (d, d) and X.shape == (d, x.shape[0])
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)


# --- Stack -----------------------------------------------------------------------------------------


def test_stack_blocks_and_sizes():
    net = gs.Stack(_mixed_layers(jax.random.key(0)))
    assert net.blocks == ("layer0.h", "layer1.h", "layer1.c", "layer2.h")
    assert net.block_sizes == (5, 4, 6, 3)
    assert net.input_size == 3 and net.output_size == 3 and net.state_size == 18


@pytest.mark.parametrize("residual", [False, True])
def test_stack_rollout_equals_layer_by_layer(residual):
    layers = (_residual_layers if residual else _mixed_layers)(jax.random.key(1))
    net = gs.Stack(layers, residual=residual)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(11, 3))
    state0 = _random_state(net, rng)
    traj = gs.rollout(net, xs, state0)

    # reference: whole-sequence rollouts, one layer after the other
    inp, i = jnp.asarray(xs), 0
    for l, cell in enumerate(layers):
        k = len(cell.blocks)
        sub = gs.rollout(cell, inp, state0[i : i + k])
        for b, name in enumerate(cell.blocks):
            np.testing.assert_allclose(traj[f"layer{l}.{name}"], sub.states[b], rtol=0, atol=1e-13)
        out = sub["h"][1:]
        inp = out + inp if residual and l >= 1 else out
        i += k


@pytest.mark.parametrize("residual", [False, True])
def test_stack_jacobian_matches_autodiff(residual):
    layers = (_residual_layers if residual else _mixed_layers)(jax.random.key(2))
    net = gs.Stack(layers, residual=residual)
    rng = np.random.default_rng(1)
    for _ in range(2):
        _check_jacobian(net, jnp.asarray(rng.normal(size=3)), _random_state(net, rng))


def test_stack_jacobian_product_equals_jacrev_of_unrolled_map():
    """∏_t ∂S_t/∂S_{t-1} along a trajectory == jacrev of S_T with respect to S_0 (an independent oracle)."""
    net = gs.Stack(_residual_layers(jax.random.key(3)), residual=True)
    rng = np.random.default_rng(2)
    xs = jnp.asarray(rng.normal(size=(8, 3)))
    s0 = flatten_state(_random_state(net, rng))

    def final(s0):
        return gs.rollout(net, xs, unflatten_state(net, s0)).flat[-1]

    ref = jax.jacrev(final)(s0)
    flat = gs.rollout(net, xs, unflatten_state(net, s0)).flat
    P = jnp.eye(net.state_size)
    for t in range(xs.shape[0]):
        J, _ = net.jacobian(xs[t], unflatten_state(net, flat[t]), t)
        P = J @ P
    np.testing.assert_allclose(P, ref, rtol=1e-10, atol=1e-12)


def test_stack_helper_builds_fresh_layers():
    net = gs.stack("lstm", 3, 5, 3, key=jax.random.key(0), proj_size=2)
    assert len(net.layers) == 3 and net.block_sizes == (2, 5) * 3
    assert [c.input_size for c in net.layers] == [3, 2, 2]
    assert not np.array_equal(net.layers[1].weight_hh, net.layers[2].weight_hh)
    res = gs.stack("indrnn", 3, 4, 3, key=jax.random.key(0), residual=True)
    assert res.residual and res.output_size == 4


# --- Bidirectional -----------------------------------------------------------------------------------


def _bidir(key):
    kf, kb = jax.random.split(key)
    return gs.Bidirectional(
        gs.cells.make("lstm", 3, 4, key=kf, dtype=F64), gs.cells.make("rnn-tanh", 3, 5, key=kb, dtype=F64)
    )


def test_bidirectional_rollout_equals_forward_and_reversed_backward():
    net = _bidir(jax.random.key(4))
    assert net.blocks == ("fwd.h", "fwd.c", "bwd.h")
    assert net.output_size == 9
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.normal(size=(2, 10, 3)))  # batched
    s0 = tuple(jnp.asarray(rng.normal(size=(2, k))) for k in net.block_sizes)
    traj = gs.rollout(net, xs, s0)
    fwd = gs.rollout(net.forward, xs, s0[:2])
    bwd = gs.rollout(net.backward, xs[:, ::-1], s0[2:])
    np.testing.assert_allclose(traj["fwd.h"], fwd["h"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(traj["fwd.c"], fwd["c"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(traj["bwd.h"], bwd["h"], rtol=0, atol=1e-14)
    # output at step t = [forward h after x_1..x_t, backward h after x_T..x_{T-t+1}]
    out = net.output(tuple(s[0, 4] for s in traj.states))
    np.testing.assert_array_equal(out, jnp.concatenate([fwd["h"][0, 4], bwd["h"][0, 4]]))


def test_bidirectional_jacobian_matches_autodiff_and_is_block_diagonal():
    net = _bidir(jax.random.key(5))
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=6))  # the paired input [x_t, x_{T+1-t}]
    state = _random_state(net, rng)
    _check_jacobian(net, x, state)
    J, X = net.jacobian(x, state, 0)
    np.testing.assert_array_equal(J[:8, 8:], 0.0)
    np.testing.assert_array_equal(J[8:, :8], 0.0)
    np.testing.assert_array_equal(X[:8, 3:], 0.0)
    np.testing.assert_array_equal(X[8:, :3], 0.0)


def test_bidirectional_of_stacks_jacobian():
    kf, kb = jax.random.split(jax.random.key(6))
    net = gs.Bidirectional(gs.Stack(_mixed_layers(kf)), gs.Stack(_residual_layers(kb), residual=True))
    rng = np.random.default_rng(5)
    _check_jacobian(net, jnp.asarray(rng.normal(size=6)), _random_state(net, rng))


def test_bidirectional_helper_has_independent_weights():
    net = gs.bidirectional("rnn-relu", 3, 4, key=jax.random.key(0))
    assert not np.array_equal(net.forward.weight_hh, net.backward.weight_hh)
    assert net.forward.activation == net.backward.activation == "relu"
