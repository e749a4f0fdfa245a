"""Every registered cell, whoever added it: the registry contract and the cell protocol.

Parametrised over ``gradscope.cells.names()`` at collection time, so a newly registered cell is checked
here without editing this file:

* registry round trip: the entry, its description/family/equation, ``make`` with every option at its default;
* determinism by key (same key, same weights; different key, different weights) and the dtype request;
* ``output(state)`` is the ``h`` block (the first block);
* ``rollout`` (jitted, vmapped for batches) under ``grad`` (finite gradients), batch == per-sequence rollouts;
* the analytic step Jacobian, where a cell has one, equals forward-mode autodiff (float64, 1e-12),
  also as a layer of a `Stack` (residual stacks and `Bidirectional` are covered in test_nets.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope.cells import _registry
from gradscope.cells._base import Cell, autodiff_jacobians, has_analytic_jacobian, has_readout

NAMES = list(gs.cells.names())
M, N, T, B = 3, 4, 6, 3


def _floating_leaves(tree):
    return [a for a in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]


def _random_state(model, rng, batch=()):
    return tuple(jnp.asarray(0.5 * rng.normal(size=batch + (k,))) for k in model.block_sizes)


def _make64(name, key=0):
    return gs.cells.make(name, M, N, key=jax.random.key(key), dtype=jnp.float64)


def test_registry_is_not_empty_and_has_the_foundation_cells():
    for name in ("rnn-tanh", "rnn-relu", "irnn", "lstm", "lstm-nofg", "lstm-peephole", "indrnn"):
        assert name in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_registry_round_trip(name):
    desc = gs.cells.names()[name]
    assert isinstance(desc, str) and desc.strip()
    e = _registry.entry(name)
    assert e.name == name and e.family.strip() and e.equation.strip()
    opts = gs.cells.options(name)
    assert isinstance(opts, dict) and "key" not in opts and "dtype" not in opts
    # every option accepted at its advertised default
    cell = gs.cells.make(name, M, N, key=jax.random.key(0), **opts)
    assert isinstance(cell, Cell)
    assert cell.input_size == M
    assert len(cell.blocks) == len(cell.block_sizes) >= 1
    assert all(isinstance(k, int) and k > 0 for k in cell.block_sizes)
    assert cell.state_size == sum(cell.block_sizes)
    assert isinstance(cell.describe(), dict)
    assert cell.dtype == jnp.float32  # the default precision
    for leaf in _floating_leaves(cell):
        assert leaf.dtype == jnp.float32
    for leaf in _floating_leaves(_make64(name)):
        assert leaf.dtype == jnp.float64


@pytest.mark.parametrize("name", NAMES)
def test_determinism_by_key(name):
    a, b, c = _make64(name, 1), _make64(name, 1), _make64(name, 2)
    la, lb, lc = (jax.tree_util.tree_leaves(t) for t in (a, b, c))
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(la, lc)), "a different key must give different weights"


@pytest.mark.parametrize("name", NAMES)
def test_output_is_the_h_block(name):
    cell = _make64(name)
    state = _random_state(cell, np.random.default_rng(0))
    if has_readout(cell):
        # the layer output also reads the step input (LRU's y = Re(C h) + D x): output_size is readout's width;
        # complex-diagonal cells name their blocks ("re", "im")
        assert cell.blocks[0] == "h" or cell.structure == "complex-diagonal"
        assert cell.readout(state, jnp.ones(M)).shape == (cell.output_size,)
    else:
        assert cell.blocks[0] == "h"
        assert cell.output_size == cell.block_sizes[0]
    np.testing.assert_array_equal(cell.output(state), state[0])
    new, aux = cell(jnp.ones(M), state)
    assert isinstance(aux, dict)
    assert len(new) == len(cell.blocks)
    for s, k in zip(new, cell.block_sizes):
        assert s.shape == (k,)


@pytest.mark.parametrize("name", NAMES)
def test_rollout_batch_jit_vmap_grad(name):
    cell = _make64(name, 3)
    rng = np.random.default_rng(1)
    xs = jnp.asarray(rng.normal(size=(B, T, M)))
    s0 = _random_state(cell, rng, (B,))

    def loss(cell, xs, s0):
        traj = gs.rollout(cell, xs, s0)
        return jnp.sum(traj.final[0] ** 2) + jnp.mean(traj.flat), traj

    # grad through the batched (vmapped, jitted) rollout; the forward pass is the batch rollout itself
    (_, batch), (g_cell, g_xs) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(cell, xs, s0)
    assert batch.flat.shape == (B, T + 1, cell.state_size)
    leaves = _floating_leaves(g_cell)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(bool(jnp.any(g != 0)) for g in leaves)
    assert g_xs.shape == (B, T, M) and bool(jnp.all(jnp.isfinite(g_xs))) and bool(jnp.any(g_xs != 0))

    # batch rollout == one rollout per sequence
    for b in range(B):
        single = gs.rollout(cell, xs[b], tuple(s[b] for s in s0))
        np.testing.assert_allclose(batch.flat[b], single.flat, rtol=0, atol=1e-12)


@jax.jit
def _both_jacobians(model, x, state, t):
    return model.jacobian(x, state, t), autodiff_jacobians(model, x, state, t)


def _assert_jacobians_match(model, x, state, t):
    (J, X), (Ja, Xa) = _both_jacobians(model, x, state, jnp.asarray(t))  # t traced: one compilation
    d = model.state_size
    assert J.shape == (d, d) and X.shape == (d, x.shape[0])
    np.testing.assert_allclose(J, Ja, rtol=0, atol=1e-12)
    np.testing.assert_allclose(X, Xa, rtol=0, atol=1e-12)
    return J


@pytest.mark.parametrize("name", NAMES)
def test_analytic_jacobian_matches_autodiff(name):
    cell = _make64(name, 4)
    if not has_analytic_jacobian(cell):
        pytest.skip(f"{name} has no analytic jacobian (autodiff fallback)")
    rng = np.random.default_rng(2)
    for t in (0, 2):
        J = _assert_jacobians_match(cell, jnp.asarray(rng.normal(size=M)), _random_state(cell, rng), t)
        if cell.structure == "diagonal":
            np.testing.assert_array_equal(J - jnp.diag(jnp.diag(J)), 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_jacobian_inside_stack(name):
    """Each cell as the first layer of a Stack: its dS'/dx and output() must compose with the next layer."""
    k0, k1 = jax.random.split(jax.random.key(5))
    first = gs.cells.make(name, M, N, key=k0, dtype=jnp.float64)
    net = gs.Stack((first, gs.cells.make("rnn-linear", first.output_size, 2, key=k1, dtype=jnp.float64)))
    rng = np.random.default_rng(3)
    _assert_jacobians_match(net, jnp.asarray(rng.normal(size=M)), _random_state(net, rng), 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_lag_profile_equals_jacrev_alone_in_a_stack_and_in_a_bidirectional(name):
    """Float64, every registered cell: alone, as the first layer of a Stack and as both directions of a
    Bidirectional, the engine's log10 ‖∂S_T/∂S_k‖_F for every lag equals NumPy's norm of `jax.jacrev` of the
    unrolled map (tests/_engine_ref.oracle: a plain scan of ``model.step``, no engine code) to 1e-10, and the
    models' analytic step Jacobians equal autodiff to 1e-12."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _engine_ref import build, inputs, oracle

    cell = build(name, M, N, seed=0)
    models = {
        "alone": cell,
        "stack": gs.Stack(
            (cell, gs.cells.make("rnn-linear", cell.output_size, 2, key=jax.random.key(9), dtype=jnp.float64))
        ),
        "bidirectional": gs.Bidirectional(cell, build(name, M, N, seed=1)),
    }
    rng = np.random.default_rng(4)
    for where, model in models.items():
        xs = inputs(T, M, seed=3)
        lp = gs.lag_profile(model, xs, spectral=False)
        _, _, P, _, _ = oracle(model, xs)
        want = np.array([np.log10(np.linalg.norm(P[T, k])) for k in range(T)])
        np.testing.assert_allclose(np.asarray(lp.log10_frobenius), want, rtol=0, atol=1e-10, err_msg=f"{name} {where}")
        if has_analytic_jacobian(model):  # at a prepared input (a Bidirectional steps on [x_t, x_{T-1-t}])
            x = model.prepare_inputs(jnp.asarray(xs))[1]
            _assert_jacobians_match(model, x, _random_state(model, rng), 1)
