"""gradscope.norms against float64 NumPy references written from the papers' equations and against torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradscope import norms
from gradscope._errors import ConfigError, ShapeError

EPS = 1e-5


def _np_norm(x, axes, eps=EPS):
    """Reference: (x − mean)/sqrt(biased var + eps) over ``axes``, straight from the definitions."""
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return {
        "bc": rng.normal(1.5, 2.0, (7, 12)),
        "btc": rng.normal(-0.5, 3.0, (5, 9, 12)),
        "gain": rng.normal(1.0, 0.3, 12),
        "bias": rng.normal(0.0, 0.3, 12),
    }


def test_layer_norm_numpy_and_torch(data):
    for x in (data["bc"], data["btc"]):
        y = np.asarray(norms.layer_norm(x, data["gain"], data["bias"]))
        ref = _np_norm(x, -1) * data["gain"] + data["bias"]
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
        t = F.layer_norm(torch.tensor(x), (12,), torch.tensor(data["gain"]), torch.tensor(data["bias"]), eps=EPS)
        np.testing.assert_allclose(y, t.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("G", [1, 3, 4, 12])
def test_group_norm_per_step_numpy(data, G):
    x = data["btc"]
    y = np.asarray(norms.group_norm(x, G, data["gain"], data["bias"]))
    xg = x.reshape(5, 9, G, 12 // G)
    ref = _np_norm(xg, -1).reshape(x.shape) * data["gain"] + data["bias"]
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    # per-step GN == torch GroupNorm applied to each (b, t) vector as a (N, C) input
    t = F.group_norm(
        torch.tensor(x.reshape(-1, 12)), G, torch.tensor(data["gain"]), torch.tensor(data["bias"]), eps=EPS
    )
    np.testing.assert_allclose(y, t.numpy().reshape(x.shape), rtol=0, atol=1e-12)


@pytest.mark.parametrize("G", [1, 4, 12])
def test_group_norm_over_time_matches_torch(data, G):
    # PyTorch GroupNorm on (B, C, L) also pools over L: our axes=(-2,) on (B, T, C)
    x = data["btc"]
    y = np.asarray(norms.group_norm(x, G, data["gain"], data["bias"], axes=(-2,)))
    t = F.group_norm(
        torch.tensor(x).transpose(1, 2), G, torch.tensor(data["gain"]), torch.tensor(data["bias"]), eps=EPS
    )
    np.testing.assert_allclose(y, t.transpose(1, 2).numpy(), rtol=0, atol=1e-12)


def test_group_norm_identities(data):
    x = data["btc"]
    np.testing.assert_allclose(norms.group_norm(x, 1), norms.layer_norm(x), atol=1e-14)
    np.testing.assert_allclose(norms.group_norm(x, 12, axes=(1,)), norms.instance_norm(x), atol=1e-14)


def test_instance_norm_numpy_and_torch(data):
    x = data["btc"]
    y = np.asarray(norms.instance_norm(x, data["gain"], data["bias"]))
    ref = _np_norm(x, 1) * data["gain"] + data["bias"]
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)
    t = F.instance_norm(
        torch.tensor(x).transpose(1, 2), weight=torch.tensor(data["gain"]), bias=torch.tensor(data["bias"]), eps=EPS
    )
    np.testing.assert_allclose(y, t.transpose(1, 2).numpy(), rtol=0, atol=1e-12)
    # single sequence (T, C)
    np.testing.assert_allclose(norms.instance_norm(x[0]), _np_norm(x[0], 0), atol=1e-12)
    with pytest.raises(ShapeError, match="degenerate"):
        norms.instance_norm(x[0, 0])


def test_batch_norm_training_and_inference(data):
    x = data["bc"]
    y, m, v = norms.batch_norm(x, data["gain"], data["bias"])
    np.testing.assert_allclose(y, _np_norm(x, 0) * data["gain"] + data["bias"], atol=1e-12)
    np.testing.assert_allclose(m, x.mean(0), atol=1e-13)
    np.testing.assert_allclose(v, x.var(0), atol=1e-12)  # biased
    # torch training mode: normalised output uses the biased batch variance
    t = F.batch_norm(
        torch.tensor(x), None, None, torch.tensor(data["gain"]), torch.tensor(data["bias"]), training=True, eps=EPS
    )
    np.testing.assert_allclose(y, t.numpy(), atol=1e-12)
    # inference mode: given statistics, identical to torch eval with those running stats
    pm, pv = np.linspace(-1, 1, 12), np.linspace(0.5, 2, 12)
    y2, m2, v2 = norms.batch_norm(x, data["gain"], data["bias"], mean=pm, var=pv)
    t2 = F.batch_norm(
        torch.tensor(x),
        torch.tensor(pm),
        torch.tensor(pv),
        torch.tensor(data["gain"]),
        torch.tensor(data["bias"]),
        training=False,
        eps=EPS,
    )
    np.testing.assert_allclose(y2, t2.numpy(), atol=1e-12)
    np.testing.assert_allclose(m2, pm)
    np.testing.assert_allclose(v2, pv)


def test_batch_norm_per_time_step(data):
    x = data["btc"]
    y, m, v = norms.batch_norm(x)
    assert m.shape == v.shape == (9, 12)
    np.testing.assert_allclose(y, _np_norm(x, 0), atol=1e-12)
    np.testing.assert_allclose(m, x.mean(0), atol=1e-13)
    # pooled over batch and time == torch BatchNorm1d on (B, C, L)
    yp, mp, vp = norms.batch_norm(x, axes=(0, 1))
    t = F.batch_norm(torch.tensor(x).transpose(1, 2), None, None, training=True, eps=EPS)
    np.testing.assert_allclose(yp, t.transpose(1, 2).numpy(), atol=1e-12)
    assert mp.shape == (12,)
    # inference with the per-step statistics reproduces training mode
    y2, _, _ = norms.batch_norm(x, mean=m, var=v)
    np.testing.assert_allclose(y2, y, atol=1e-13)


@pytest.mark.parametrize("G", [1, 2, 6])
def test_group_norm_jacobian_analytic(data, G):
    a = jnp.asarray(data["btc"][0, 0])
    g = jnp.asarray(data["gain"])
    auto = jax.jacrev(lambda a: norms.group_norm(a, G, g))(a)
    np.testing.assert_allclose(norms.group_norm_jacobian(a, G, g), auto, atol=1e-12)
    R = jnp.asarray(np.random.default_rng(1).normal(size=(12, 5)))
    np.testing.assert_allclose(norms.group_norm_jacobian(a, G, g, right=R), auto @ R, atol=1e-12)
    if G == 1:
        np.testing.assert_allclose(norms.layer_norm_jacobian(a, g), auto, atol=1e-12)


def test_jit_vmap_grad(data):
    x = jnp.asarray(data["btc"])
    f = jax.jit(lambda x: norms.group_norm(x, 4))
    np.testing.assert_allclose(f(x), norms.group_norm(x, 4), atol=1e-14)
    v = jax.vmap(lambda s: norms.layer_norm(s))(x)
    np.testing.assert_allclose(v, norms.layer_norm(x), atol=1e-14)
    gr = jax.grad(lambda x: jnp.sum(norms.batch_norm(x)[0] ** 3))(x)
    assert np.all(np.isfinite(gr))


def test_bad_arguments(data):
    with pytest.raises(ConfigError, match="groups=5"):
        norms.group_norm(data["bc"], 5)
    with pytest.raises(ShapeError):
        norms.group_norm(data["bc"], 2, axes=(-1,))
    with pytest.raises(ConfigError):
        norms.batch_norm(data["bc"], mean=np.zeros(12))
    with pytest.raises(ShapeError):
        norms.batch_norm(data["bc"], axes=(3,))
