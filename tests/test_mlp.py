"""The depth-as-time MLP against a plain NumPy forward pass, autodiff, and closed-form spectra."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope._errors import ConfigError, ShapeError
from gradscope._rollout import rollout
from gradscope.cells._base import autodiff_jacobians
from gradscope.mlp import MLP, collect_statistics, make_mlp, mlp_inputs

NP_ACT = {
    "tanh": np.tanh,
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "relu": lambda a: np.maximum(a, 0),
    "leaky-relu": lambda a: np.where(a > 0, a, 0.01 * a),
    "elu": lambda a: np.where(a > 0, a, np.expm1(np.minimum(a, 0))),
    "linear": lambda a: a,
}
MIXED = ("tanh", "relu", "sigmoid", "elu", "leaky-relu", "linear")

jac = jax.jit(lambda m, x, s, t: m.jacobian(x, s, t))
auto_jac = jax.jit(lambda m, x, s, t: autodiff_jacobians(m, x, s, t))


def np_forward(mlp, x0, bn_stats="population"):
    """Plain float64 forward pass: a = W h + b, [BN], h = φ(a) (+ h), returning h_0..h_L."""
    W, b = np.asarray(mlp.weights), np.asarray(mlp.biases)
    hs = [np.asarray(x0, float)]
    for l in range(mlp.depth):
        h = hs[-1]
        a = h @ W[l].T + b[l]
        if mlp.batch_norm:
            if bn_stats == "batch":
                mu, var = a.mean(0), a.var(0)
            else:
                mu, var = np.asarray(mlp.bn_mean[l]), np.asarray(mlp.bn_var[l])
            a = np.asarray(mlp.bn_gamma[l]) * (a - mu) / np.sqrt(var + mlp.eps) + np.asarray(mlp.bn_beta[l])
        y = NP_ACT[mlp.activations[l]](a)
        hs.append(h + y if mlp.residual else y)
    return np.stack(hs, axis=-2)


def with_random_bn(mlp, seed):
    rng = np.random.default_rng(seed)
    L, n = mlp.depth, mlp.width
    return dataclasses.replace(
        mlp,
        bn_gamma=jnp.asarray(rng.normal(1, 0.3, (L, n))),
        bn_beta=jnp.asarray(rng.normal(0, 0.3, (L, n))),
        bn_mean=jnp.asarray(rng.normal(0, 0.3, (L, n))),
        bn_var=jnp.asarray(rng.uniform(0.3, 2, (L, n))),
    )


CONFIGS = [
    dict(activation="tanh", init="gaussian"),
    dict(activation=MIXED, init="pytorch"),
    dict(activation=MIXED, init="orthogonal", residual=True, bias_std=0.2),
    dict(activation="sigmoid", init="gaussian", batch_norm=True, residual=True),
    dict(activation=MIXED, init="pytorch", batch_norm=True),
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_rollout_equals_numpy_forward(cfg):
    mlp = make_mlp(5, 6, key=jax.random.key(1), dtype=jnp.float64, **cfg)
    if mlp.batch_norm:
        mlp = with_random_bn(mlp, 1)
    x0 = np.random.default_rng(2).normal(size=(3, 5))
    xs, s0 = mlp_inputs(mlp, x0)
    assert xs.shape == (3, 6, 0)
    traj = rollout(mlp, xs, s0)
    np.testing.assert_allclose(traj.states[0], np_forward(mlp, x0), rtol=0, atol=1e-12)
    # single example
    xs1, s01 = mlp_inputs(mlp, x0[1])
    np.testing.assert_allclose(rollout(mlp, xs1, s01).states[0], np_forward(mlp, x0[1]), atol=1e-12)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_analytic_jacobian_equals_autodiff(cfg):
    mlp = make_mlp(5, 6, key=jax.random.key(3), dtype=jnp.float64, **cfg)
    if mlp.batch_norm:
        mlp = with_random_bn(mlp, 3)
    rng = np.random.default_rng(4)
    x = jnp.zeros((0,))
    for t in range(6):
        s = (jnp.asarray(rng.normal(size=5)),)
        A, B = jac(mlp, x, s, t), auto_jac(mlp, x, s, t)  # traced t: lax.switch over activations
        np.testing.assert_allclose(A[0], B[0], rtol=0, atol=1e-10)
        assert A[1].shape == B[1].shape == (5, 0)
        np.testing.assert_allclose(mlp.jacobian(x, s, t)[0], B[0], rtol=0, atol=1e-10)  # Python-int t


def _end_to_end(mlp, x0):
    xs, s0 = mlp_inputs(mlp, x0)
    traj = rollout(mlp, xs, s0)
    P = jnp.eye(mlp.width, dtype=mlp.dtype)
    prods = []
    for t in range(mlp.depth):
        P = jac(mlp, xs[t], (traj.states[0][t],), t)[0] @ P
        prods.append(P)
    return prods


def test_product_equals_jacrev_of_whole_net():
    mlp = make_mlp(4, 5, key=jax.random.key(5), dtype=jnp.float64, activation=MIXED[:5], init="pytorch", residual=True)
    x0 = jnp.asarray(np.random.default_rng(5).normal(size=4))
    whole = jax.jacrev(lambda x: rollout(mlp, *mlp_inputs(mlp, x)).states[0][-1])(x0)
    np.testing.assert_allclose(_end_to_end(mlp, x0)[-1], whole, atol=1e-12)


def test_orthogonal_linear_net_is_isometric():
    """Saxe et al. 2014: every singular value of a deep linear orthogonal net's Jacobian is 1."""
    mlp = make_mlp(16, 30, key=jax.random.key(6), dtype=jnp.float64, activation="linear", init="orthogonal")
    J = _end_to_end(mlp, np.random.default_rng(6).normal(size=16))[-1]
    np.testing.assert_allclose(np.linalg.svd(np.asarray(J), compute_uv=False), 1.0, atol=1e-10)


def test_gaussian_linear_net_mean_spectrum():
    """Linear Gaussian net with σ_w = 1: E[mean eigenvalue of JJᵀ] = 1 exactly (Pennington et al.);
    variance of the eigenvalues ≈ L for large n (loose bounds: finite n, few seeds)."""
    n, L = 100, 5
    means, variances = [], []
    for seed in range(4):
        mlp = make_mlp(n, L, key=jax.random.key(seed), dtype=jnp.float64, activation="linear", init="gaussian")
        J = np.linalg.multi_dot(list(np.asarray(mlp.weights)[::-1]))  # closed form for a linear net
        np.testing.assert_allclose(_end_to_end(mlp, np.zeros(n))[-1], J, atol=1e-10)
        ev = np.linalg.eigvalsh(J @ J.T)
        means.append(ev.mean())
        variances.append(ev.var())
    assert abs(np.mean(means) - 1) < 0.15, means
    assert 0.5 * L < np.mean(variances) < 1.5 * L, variances


def test_sigmoid_net_obeys_pascanu_bound():
    """‖∂h_l/∂h_0‖₂ ≤ ∏_{k≤l} σ_max(W_k)/4 (|σ'| ≤ 1/4), so the gradient decays at least that fast."""
    mlp = make_mlp(20, 25, key=jax.random.key(7), dtype=jnp.float64, activation="sigmoid", init="gaussian", gain=1.5)
    prods = _end_to_end(mlp, np.random.default_rng(7).normal(size=20))
    smax = np.linalg.norm(np.asarray(mlp.weights), 2, axis=(1, 2))
    assert np.all(smax < 4)  # so the bound is a decaying geometric sequence
    log_bound = np.cumsum(np.log10(smax / 4))
    log_norm = np.array([np.log10(np.linalg.norm(np.asarray(P), 2)) for P in prods])
    assert np.all(log_norm <= log_bound + 1e-12)
    assert log_norm[-1] < -10


def test_collect_statistics_reproduces_training_mode():
    mlp = make_mlp(
        6,
        4,
        key=jax.random.key(8),
        dtype=jnp.float64,
        activation=("tanh", "relu", "elu", "sigmoid"),
        init="pytorch",
        batch_norm=True,
        residual=True,
    )
    mlp = with_random_bn(mlp, 8)  # random γ, β (the statistics get replaced)
    x0 = np.random.default_rng(8).normal(1.0, 2.0, size=(10, 6))
    inf = collect_statistics(mlp, x0)
    train = np_forward(mlp, x0, bn_stats="batch")
    np.testing.assert_allclose(rollout(inf, *mlp_inputs(inf, x0)).states[0], train, atol=1e-12)
    assert not np.allclose(rollout(mlp, *mlp_inputs(mlp, x0)).states[0], train, atol=1e-6)


def test_jit_vmap_grad():
    mlp = make_mlp(4, 3, key=jax.random.key(9), dtype=jnp.float64, activation=MIXED[:3], batch_norm=True)
    mlp = with_random_bn(mlp, 9)
    x0 = jnp.asarray(np.random.default_rng(9).normal(size=(2, 4)))

    def loss(m):
        return jnp.sum(rollout(m, *mlp_inputs(m, x0)).states[0][:, -1] ** 2)

    g = jax.grad(loss)(mlp)
    leaves, tdef = jax.tree_util.tree_flatten(mlp)
    rng = np.random.default_rng(10)
    dirs = [jnp.asarray(rng.normal(size=l.shape)) for l in leaves]
    shift = lambda e: jax.tree_util.tree_unflatten(tdef, [l + e * d for l, d in zip(leaves, dirs)])  # noqa: E731
    fd = (loss(shift(1e-6)) - loss(shift(-1e-6))) / 2e-6
    an = sum(jnp.sum(a * d) for a, d in zip(jax.tree_util.tree_leaves(g), dirs))
    np.testing.assert_allclose(an, fd, rtol=1e-6)
    v = jax.vmap(lambda h: mlp.step(jnp.zeros((0,)), (h,), 1)[0][0])(x0)
    np.testing.assert_allclose(v[1], mlp.step(jnp.zeros((0,)), (x0[1],), 1)[0][0], atol=1e-14)


def test_float32_and_protocol():
    mlp = make_mlp(8, 3, key=jax.random.key(0))
    assert mlp.dtype == jnp.float32 and mlp.blocks == ("h",) and mlp.block_sizes == (8,)
    assert mlp.input_size == 0 and mlp.depth == 3 and mlp.width == 8
    g = make_mlp(200, 1, key=jax.random.key(0), init="gaussian", gain=1.5)
    assert abs(float(jnp.std(g.weights)) * np.sqrt(200) - 1.5) < 0.05
    o = make_mlp(8, 2, key=jax.random.key(0), init="orthogonal", gain=2.0)
    np.testing.assert_allclose(o.weights[1] @ o.weights[1].T, 4 * np.eye(8), atol=1e-5)
    p = make_mlp(8, 2, key=jax.random.key(0), init="pytorch")
    assert float(jnp.abs(p.weights).max()) <= 1 / np.sqrt(8)


def test_bad_arguments():
    key = jax.random.key(0)
    with pytest.raises(ConfigError, match="init='xavier'"):
        make_mlp(4, 2, key=key, init="xavier")
    with pytest.raises(ConfigError, match="activation"):
        make_mlp(4, 2, key=key, activation=("tanh",))
    with pytest.raises(ConfigError, match="activation"):
        make_mlp(4, 2, key=key, activation="softsign")
    with pytest.raises(ConfigError, match="depth"):
        make_mlp(4, 0, key=key)
    with pytest.raises(ConfigError):
        MLP(jnp.zeros((2, 3, 3)), jnp.zeros((2, 3)), activations=("tanh",))
    mlp = make_mlp(4, 2, key=key)
    with pytest.raises(ShapeError, match="x0"):
        mlp_inputs(mlp, np.zeros(5))
    with pytest.raises(ConfigError, match="batch_norm"):
        collect_statistics(mlp, np.zeros((3, 4)))
