"""Checks shared by the gated-cell tests (test_gru, test_mut, test_minimal).

Every oracle here is independent of the cell's own formulas: hand-written float64 NumPy step
functions (passed in by each test file), `jax.jacfwd` of the flat step, the chain rule through the
unrolled map, and central finite differences.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gradscope._rollout import rollout
from gradscope.cells import make
from gradscope.cells._base import autodiff_jacobians


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def np_params(cell) -> dict:
    """The cell's weights as float64 NumPy arrays (None fields kept as None)."""
    out = {}
    for f in dataclasses.fields(cell):
        if not f.metadata.get("static", False):
            v = getattr(cell, f.name)
            out[f.name] = None if v is None else np.asarray(v, np.float64)
    return out


def random_inputs(seed, B, T, m, n, dtype, scale=1.0):
    """Inputs and initial states, rounded to ``dtype`` first so cell and reference see the same numbers."""
    rng = np.random.default_rng(seed)
    xs = (scale * rng.standard_normal((B, T, m))).astype(dtype)
    h0 = (0.5 * rng.standard_normal((B, n))).astype(dtype)
    return xs, h0


def scaled(cell, factor):
    """All weights times ``factor`` (pushes gates out of their near-linear regime)."""
    return jax.tree.map(lambda w: w * factor, cell)


def check_matches_reference(name, ref_step, m, n, dtype, tol, seed=0, gate_keys=(), **opts):
    """Rollout of ``make(name, ...)`` == a float64 NumPy loop of ``ref_step(params, x, h) -> (h', gates)``."""
    cell = make(name, m, n, key=jax.random.key(seed), dtype=dtype, **opts)
    cell = scaled(cell, 1.5)
    xs, h0 = random_inputs(seed, 3, 6, m, n, np.dtype(dtype))
    traj = rollout(cell, jnp.asarray(xs), (jnp.asarray(h0),))
    assert traj["h"].dtype == jnp.dtype(dtype)
    p = np_params(cell)
    for b in range(xs.shape[0]):
        h = h0[b].astype(np.float64)
        for t in range(xs.shape[1]):
            h, gates = ref_step(p, xs[b, t].astype(np.float64), h)
            np.testing.assert_allclose(np.asarray(traj["h"][b, t + 1], np.float64), h, rtol=0, atol=tol)
            for k in gate_keys:
                np.testing.assert_allclose(np.asarray(traj.aux[k][b, t], np.float64), gates[k], rtol=0, atol=tol)
    return cell


def check_jacobian_vs_autodiff(cell, seed=1, tol=1e-12):
    """Analytic (∂h'/∂h, ∂h'/∂x) == jax.jacfwd of the flat step, float64, at a few random points."""
    rng = np.random.default_rng(seed)
    n, m = cell.hidden_size, cell.input_size
    for _ in range(3):
        x = jnp.asarray(rng.standard_normal(m))
        h = jnp.asarray(rng.standard_normal(n))
        Jh, Jx = cell.jacobian(x, (h,), 0)
        Ah, Ax = autodiff_jacobians(cell, x, (h,), 0)
        assert Jh.shape == (n, n) and Jx.shape == (n, m)
        np.testing.assert_allclose(np.asarray(Jh), np.asarray(Ah), rtol=0, atol=tol)
        np.testing.assert_allclose(np.asarray(Jx), np.asarray(Ax), rtol=0, atol=tol)


def check_jit_vmap(cell, seed=2):
    """jit and vmap give the per-example results, for the step, the Jacobian and the direct path."""
    n, m = cell.hidden_size, cell.input_size
    xs, h0 = random_inputs(seed, 4, 1, m, n, np.float64)
    X, H = jnp.asarray(xs[:, 0]), jnp.asarray(h0)
    one = [cell(X[i], (H[i],))[0][0] for i in range(4)]
    step = jax.jit(lambda c, x, h: c(x, (h,))[0][0])  # the cell itself is a (pytree) argument
    batched = jax.jit(jax.vmap(lambda x, h: cell(x, (h,))[0][0]))(X, H)
    Jb = jax.jit(jax.vmap(lambda x, h: cell.jacobian(x, (h,), 0)))(X, H)
    Db = jax.vmap(lambda x, h: cell.direct_path(x, (h,), 0))(X, H)
    for i in range(4):
        np.testing.assert_allclose(np.asarray(step(cell, X[i], H[i])), np.asarray(one[i]), rtol=0, atol=1e-13)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(one[i]), rtol=0, atol=1e-13)
        Jh, Jx = cell.jacobian(X[i], (H[i],), 0)
        np.testing.assert_allclose(np.asarray(Jb[0][i]), np.asarray(Jh), rtol=0, atol=1e-13)
        np.testing.assert_allclose(np.asarray(Jb[1][i]), np.asarray(Jx), rtol=0, atol=1e-13)
        np.testing.assert_allclose(np.asarray(Db[i]), np.asarray(cell.direct_path(X[i], (H[i],), 0)), atol=1e-13)


def check_grad_through_rollout(cell, seed=3, T=5):
    """jax.grad of a scalar loss through `rollout`:

    * w.r.t. h_0 it equals the chain rule with the analytic step Jacobians, (J_T … J_1)ᵀ w;
    * w.r.t. the weights it matches a central finite difference along a random direction.
    """
    n, m = cell.hidden_size, cell.input_size
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.standard_normal((T, m)))
    h0 = jnp.asarray(0.5 * rng.standard_normal(n))
    w = jnp.asarray(rng.standard_normal(n))

    def loss(c, h0):
        return jnp.sum(w * rollout(c, xs, (h0,)).final[0])

    g_cell, g_h0 = jax.grad(loss, argnums=(0, 1))(cell, h0)
    hs = rollout(cell, xs, (h0,))["h"]
    g = w
    for t in reversed(range(T)):
        g = cell.jacobian(xs[t], (hs[t],), t)[0].T @ g
    np.testing.assert_allclose(np.asarray(g_h0), np.asarray(g), rtol=0, atol=1e-12)

    leaves, tree = jax.tree.flatten(cell)
    d = jax.tree.unflatten(tree, [jnp.asarray(rng.standard_normal(l.shape)) for l in leaves])
    eps = 1e-5
    plus = jax.tree.map(lambda a, b: a + eps * b, cell, d)
    minus = jax.tree.map(lambda a, b: a - eps * b, cell, d)
    fd = (loss(plus, h0) - loss(minus, h0)) / (2 * eps)
    ad = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g_cell), jax.tree.leaves(d)))
    assert abs(float(fd) - float(ad)) < 1e-7 * max(1.0, abs(float(ad)))
