"""`gradscope.watch.Watcher` in real training loops: it analyses every N-th step, logs the records of
`gradscope.watch.jsonl_backend`, and changes nothing in the loop it watches.

Truth: the training loops are run twice, with and without the watcher, and their parameters compared
bit for bit; the logged analyses equal `gradscope.analyse` of the same weights converted independently
(a copy kept at the watched step); the Jacobian norms equal those of the framework's own autograd.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope import GradscopeError
from gradscope.watch import Watcher
from gradscope.watch.metrics import scalars

LIGHT = {"spectra": False, "lyapunov": False, "paths": False, "gates": False}


def _records(logdir):
    return [json.loads(line) for line in (logdir / "gradscope.jsonl").read_text().splitlines()]


def _gru(seed=0, dtype=jnp.float64):
    return gs.cells.make("gru", 2, 4, key=jax.random.key(seed), dtype=dtype)


def _xs(B=3, T=10, m=2, seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, m))


# ------------------------------------------------------------------------------------- every, errors


def test_analyses_only_multiples_of_every(tmp_path, monkeypatch):
    import gradscope.analysis as ga

    calls = []
    real = ga.analyse

    def counting(model, xs, **kw):
        calls.append(kw)
        return real(model, xs, **kw)

    monkeypatch.setattr(ga, "analyse", counting)
    cell = _gru()
    with Watcher(_xs(), every=5, logdir=tmp_path) as w:
        out = [w.step(cell, s) for s in range(23)]
    assert len(calls) == 5 and w.analyses == 5
    assert [s for s, a in enumerate(out) if a is not None] == [0, 5, 10, 15, 20]
    # the default stages are the cheap ones: lag profile and summary
    assert all(kw[k] is False for kw in calls for k in LIGHT)
    recs = _records(tmp_path)
    assert [r["step"] for r in recs] == [0, 5, 10, 15, 20]
    assert {r["schema"] for r in recs} == {"gradscope.watch/1"} and {r["model"] for r in recs} == {cell.name}
    assert all(isinstance(r["wall_time"], float) for r in recs)
    # the logged summary is the analysis of the same model, and the lag profile is logged for `history`
    ref = real(cell, _xs(), **LIGHT)
    assert recs[0]["analysis"]["summary"]["horizon"] == ref.summary["horizon"]
    np.testing.assert_allclose(recs[0]["analysis"]["summary"]["log10_norm_max_lag"], ref.summary["log10_norm_max_lag"])
    assert "log10_spectral" in recs[0]["analysis"]["lag_profile"]


def test_logged_norm_is_the_autograd_jacobian_norm(tmp_path):
    """Independent truth: ‖∂S_T/∂S_0‖₂ of the GRU by jax.jacrev of the unrolled PyTorch-convention map, in
    float64, batch-aggregated as log10 of the mean norm (the analysis's documented rule)."""
    cell, xs = _gru(), _xs()
    p = {k: np.asarray(getattr(cell, k)) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

    def unrolled(h, x):  # torch.nn.GRU's equations, written out
        for t in range(x.shape[0]):
            gi = p["weight_ih"] @ x[t] + p["bias_ih"]
            gh = p["weight_hh"] @ h + p["bias_hh"]
            r = jax.nn.sigmoid(gi[:4] + gh[:4])
            z = jax.nn.sigmoid(gi[4:8] + gh[4:8])
            n = jnp.tanh(gi[8:] + r * gh[8:])
            h = (1 - z) * n + z * h
        return h

    norms = [np.linalg.norm(np.asarray(jax.jacrev(unrolled)(jnp.zeros(4), jnp.asarray(x))), 2) for x in xs]
    with Watcher(xs, every=1, logdir=tmp_path) as w:
        w.step(cell, 0)
    got = _records(tmp_path)[0]["analysis"]["summary"]["log10_norm_max_lag"]
    np.testing.assert_allclose(got, np.log10(np.mean(norms)), rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every": 0},
        {"every": -3},
        {"every": 2.0},
        {"every": True},
        {"backends": ("tensorbord",)},
        {"backends": ("jsonl", "wandb")},
        {"metrics": ("lyapunv",)},
        {"metrics": 3},
        {"threshold": float("nan")},
    ],
)
def test_bad_arguments_are_one_clear_error(tmp_path, kwargs):
    args = {"every": 1, "logdir": tmp_path} | kwargs
    with pytest.raises(GradscopeError) as e:
        Watcher(_xs(), **args)
    assert "\n" not in str(e.value)
    name = next(iter(kwargs))
    assert name in str(e.value) or repr(next(iter(kwargs.values()))[0]) in str(e.value)
    assert not (tmp_path / "gradscope.jsonl").exists() or (tmp_path / "gradscope.jsonl").read_text() == ""


def test_unknown_backend_suggests_the_right_name(tmp_path):
    with pytest.raises(GradscopeError, match="did you mean tensorboard"):
        Watcher(_xs(), logdir=tmp_path, backends=("tensorbord",))


@pytest.mark.parametrize(
    "xs, match",
    [(np.zeros(5), "shape"), (np.full((4, 2), np.nan), "NaN"), (np.zeros((4, 2), int), "dtype")],
)
def test_bad_inputs(tmp_path, xs, match):
    with pytest.raises(GradscopeError, match=match):
        Watcher(xs, logdir=tmp_path)


def test_bad_steps_and_models(tmp_path):
    w = Watcher(_xs(), every=2, logdir=tmp_path)
    for bad in (-1, 1.0, True, "3"):
        with pytest.raises(GradscopeError, match="step="):
            w.step(_gru(), bad)
    with pytest.raises(GradscopeError, match="model=object"):
        w.step(object(), 0)
    w.close()
    w.close()  # idempotent
    assert w.step(_gru(), 1) is None  # not watched: returns at once, even after close
    with pytest.raises(GradscopeError, match="after watcher.close"):
        w.step(_gru(), 2)


def test_compiled_programs_are_reused_across_steps(tmp_path):
    """Same shapes at every step: the engine's jitted programs compile once (their cache does not grow)."""
    from gradscope.engine import _prep, products

    cells = [_gru(seed) for seed in range(4)]
    with Watcher(_xs(), every=1, logdir=tmp_path) as w:
        w.step(cells[0], 0)
        sizes = products._lag_profile._cache_size(), _prep._states._cache_size()
        for s, c in enumerate(cells[1:], 1):
            w.step(c, s)
        assert (products._lag_profile._cache_size(), _prep._states._cache_size()) == sizes


def test_opt_in_stages_are_logged(tmp_path):
    with Watcher(_xs(), every=1, logdir=tmp_path, metrics=("lyapunov", "gates")) as w:
        a = w.step(_gru(), 0)
    rec = _records(tmp_path)[0]
    assert a is not None and a.lyapunov is not None and a.spectra is None
    assert rec["analysis"]["summary"]["lyapunov_max"] is not None and "gates" in rec["analysis"]
    tags = scalars(rec)
    assert "gradscope/lyapunov_max" in tags and "gradscope/gate_z_mean" in tags


# ------------------------------------------------------------------------------------------ PyTorch


def _torch_loop(steps, watcher=None, check=None):
    """A 2-layer LSTM with dropout between its layers (so the loop draws from torch's RNG) trained with Adam."""
    import torch

    torch.manual_seed(0)
    np.random.seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(2, 6, num_layers=2, dropout=0.3, batch_first=True)
            self.head = torch.nn.Linear(6, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(steps):
        x = torch.randn(4, 10, 2)
        y = x.sum(dim=(1, 2))[:, None] + float(np.random.normal())
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if watcher is not None:
            (check or (lambda n, s: watcher.step(n, s)))(net, step)
    return net


@pytest.mark.slow
def test_torch_loop_is_bitwise_unchanged(tmp_path):
    pytest.importorskip("torch")
    import torch

    xs = torch.randn(3, 10, 2, generator=torch.Generator().manual_seed(1))
    w = Watcher(xs, every=4, logdir=tmp_path, backends=("jsonl", "tensorboard"))
    seen = []

    def check(net, step):
        grads = {n: (p.grad, p.grad.clone()) for n, p in net.named_parameters()}
        params = {n: p.detach().clone() for n, p in net.named_parameters()}
        rng, nprng, mode = torch.get_rng_state(), np.random.get_state(), net.training
        a = w.step(net, step)
        seen.append(a is not None)
        assert torch.equal(torch.get_rng_state(), rng)
        after = np.random.get_state()
        assert after[0] == nprng[0] and np.array_equal(after[1], nprng[1]) and after[2:] == nprng[2:]
        assert net.training is mode
        for n, p in net.named_parameters():
            assert p.grad is grads[n][0] and torch.equal(p.grad, grads[n][1]), n
            assert torch.equal(p.detach(), params[n]), n

    with w:
        watched = _torch_loop(12, w, check)
    plain = _torch_loop(12)
    assert seen.count(True) == 3
    for (n, p), (_, q) in zip(watched.named_parameters(), plain.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    assert len(_records(tmp_path)) == 3


# ------------------------------------------------------------------------------------- JAX / optax


def _eqx_loop(steps, watcher=None, every_model=None):
    eqx = pytest.importorskip("equinox")
    import optax

    class Model(eqx.Module):
        cell: eqx.nn.GRUCell
        head: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.cell = eqx.nn.GRUCell(2, 5, key=k1)
            self.head = eqx.nn.Linear(5, 1, key=k2)

        def __call__(self, xs):
            h, _ = jax.lax.scan(lambda h, x: (self.cell(x, h), None), jnp.zeros(5), xs)
            return self.head(h)[0]

    model = Model(jax.random.key(0))
    opt = optax.adam(1e-2)
    state = opt.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def update(model, state, x, y):
        loss, g = eqx.filter_value_and_grad(lambda m: jnp.mean((jax.vmap(m)(x) - y) ** 2))(model)
        upd, state = opt.update(g, state, model)
        return eqx.apply_updates(model, upd), state, loss

    key = jax.random.key(1)
    for step in range(steps):
        key, sub = jax.random.split(key)
        x = jax.random.normal(sub, (4, 8, 2))
        model, state, _ = update(model, state, x, x.sum(axis=(1, 2)))
        if watcher is not None:
            if every_model is not None and watcher.watched(step):
                every_model[step] = model
            watcher.step(model, step)
    return model


@pytest.mark.slow
def test_equinox_optax_loop_is_watched_and_unchanged(tmp_path):
    xs = _xs(T=8)
    kept: dict = {}
    with Watcher(xs, every=5, logdir=tmp_path) as w:
        watched = _eqx_loop(12, w, kept)
    plain = _eqx_loop(12)
    for a, b in zip(jax.tree.leaves(watched), jax.tree.leaves(plain), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    recs = _records(tmp_path)
    assert [r["step"] for r in recs] == [0, 5, 10] == sorted(kept)
    for r in recs:  # equals an independent conversion of the model kept at that step
        ref = gs.analyse(gs.io.from_equinox(kept[r["step"]].cell), xs, **LIGHT)
        assert r["model"] == "Model"
        np.testing.assert_allclose(r["analysis"]["summary"]["log10_norm_max_lag"], ref.summary["log10_norm_max_lag"])
        assert r["analysis"]["summary"]["horizon"] == ref.summary["horizon"]


@pytest.mark.slow
def test_flax_models_are_converted():
    """A linen parameter tree and an NNX module go through gradscope.io.from_flax."""
    pytest.importorskip("flax")
    from flax import linen, nnx

    from gradscope.watch.convert import to_gradscope

    cell = linen.GRUCell(features=4)
    params = cell.init(jax.random.key(0), jnp.zeros(4), jnp.zeros(3))
    got = to_gradscope(params)
    ref = gs.io.from_flax(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        assert np.array_equal(a, b)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.cell = nnx.GRUCell(3, 4, rngs=rngs)
            self.head = nnx.Linear(4, 1, rngs=rngs)

    net = Net(nnx.Rngs(0))
    got = to_gradscope(net)
    assert np.array_equal(np.asarray(got.weight_hh), np.asarray(gs.io.from_flax(net.cell).weight_hh))
