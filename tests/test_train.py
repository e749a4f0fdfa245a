"""Training loop, norm clipping, IndRNN constraint, checkpoints and resume."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope._errors import ConfigError, GradscopeError, ShapeError
from gradscope.experiments import checkpoint as ckpt
from gradscope.experiments import tasks
from gradscope.experiments.train import (
    Network,
    Readout,
    TrainingDiverged,
    evaluate,
    network,
    norm_clipping,
    restore,
    train,
)


def small_indrnn(T, hidden=8, layers=2, seed=1, **opts):
    return gs.stack("indrnn", 2, hidden, layers, key=jax.random.key(seed), max_length=T, **opts)


# ----------------------------------------------------------------------------------- norm clipping


def test_norm_clipping_sets_norm_to_threshold_and_keeps_direction():
    """Pascanu et al. 2013, Algorithm 1: ‖g_out‖ = θ and cos(g_in, g_out) = 1."""
    rng = np.random.default_rng(0)
    g = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(5,))}
    flat = np.concatenate([g["a"].ravel(), g["b"].ravel()])
    norm = np.linalg.norm(flat)
    theta = norm / 3
    tx = norm_clipping(theta)
    out, _ = tx.update(jax.tree_util.tree_map(jnp.asarray, g), tx.init(g))
    flat_out = np.concatenate([np.asarray(out["a"]).ravel(), np.asarray(out["b"]).ravel()])
    assert np.linalg.norm(flat_out) == pytest.approx(theta, rel=1e-12)
    assert flat @ flat_out / (norm * np.linalg.norm(flat_out)) == pytest.approx(1.0, abs=1e-12)
    # below the threshold the gradient is untouched
    tx2 = norm_clipping(2 * norm)
    out2, _ = tx2.update(jax.tree_util.tree_map(jnp.asarray, g), tx2.init(g))
    np.testing.assert_array_equal(np.asarray(out2["a"]), g["a"])
    with pytest.raises(ConfigError, match="clip_norm=-1"):
        norm_clipping(-1)


# ------------------------------------------------------------------------------------------ network


def test_network_predictions_match_numpy_indrnn_stack():
    T, B = 7, 3
    rnn = gs.stack("indrnn", 2, 4, 2, key=jax.random.key(0), dtype=jnp.float64, u_min=0.5, u_max=1.2)
    ro = Readout.init(jax.random.key(1), 4, 3, jnp.float64)
    xs = np.random.default_rng(1).normal(size=(B, T, 2))
    layers = [{k: np.asarray(getattr(c, k)) for k in ("weight_ih", "weight_hh_diag", "bias")} for c in rnn.layers]
    hs = [np.zeros((B, 4)), np.zeros((B, 4))]
    ref = []
    for t in range(T):  # h_t = relu(W x_t + u ⊙ h_{t-1} + b), layer by layer (Li et al. eq. 2)
        inp = xs[:, t]
        for l, p in enumerate(layers):
            hs[l] = np.maximum(inp @ p["weight_ih"].T + p["weight_hh_diag"] * hs[l] + p["bias"], 0)
            inp = hs[l]
        ref.append(inp @ np.asarray(ro.weight).T + np.asarray(ro.bias))
    ref = np.stack(ref, 1)
    np.testing.assert_allclose(np.asarray(Network(rnn, ro, mode="every")(jnp.asarray(xs))), ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(Network(rnn, ro, mode="last")(jnp.asarray(xs))), ref[:, -1], rtol=1e-12)


def test_network_rejects_mismatched_sizes_and_bidirectional_lm():
    with pytest.raises(ShapeError, match="input_size"):
        network(small_indrnn(10), tasks.make("temporal-order", length=10), key=jax.random.key(0))
    bi = gs.bidirectional("rnn-tanh", 10, 4, key=jax.random.key(0))
    with pytest.raises(ConfigError, match="Bidirectional"):
        network(bi, tasks.make("copy", length=21, alphabet=8, symbols=10), key=jax.random.key(0))


def test_network_refuses_a_model_that_declares_itself_non_causal():
    """The readout-at-every-step check reads the model's own ``causal`` flag, not its class."""
    cell = gs.cells.make("rnn-tanh", 10, 4, key=jax.random.key(0))

    @dataclasses.dataclass(frozen=True)
    class Lookahead:  # a user's wrapper that says it sees later inputs
        inner: object
        causal = False

        def __getattr__(self, name):
            return getattr(self.inner, name)

    copy = tasks.make("copy", length=21, alphabet=8, symbols=10)
    with pytest.raises(ConfigError, match="Lookahead.*depends on later inputs"):
        network(Lookahead(cell), copy, key=jax.random.key(0))
    assert network(cell, copy, key=jax.random.key(0)).mode == "every"  # a plain cell is causal


def test_clip_indrnn_clips_every_indrnn_cell_of_any_network_and_nothing_else():
    """Li et al. 2018's |u| ≤ b on every IndRNN cell, found through the model's pytree: a Bidirectional
    of IndRNN Stacks (4 cells) and a Stack mixing IndRNN and LSTM (1 cell). Each u equals NumPy's
    clip of the original; every other leaf is bit-identical."""
    from gradscope.cells import make
    from gradscope.cells.indrnn import IndRNN
    from gradscope.experiments.train import clip_indrnn

    b, u = 1.0, dict(u_min=0.5, u_max=1.5)  # 16 units of u ~ U(0.5, 1.5): some above b, some below
    k = jax.random.split(jax.random.key(4), 4)
    bi = gs.Bidirectional(gs.stack("indrnn", 3, 16, 2, key=k[0], **u), gs.stack("indrnn", 3, 16, 2, key=k[1], **u))
    mixed = gs.Stack((make("indrnn", 3, 16, key=k[2], **u), make("lstm", 16, 5, key=k[3])))
    for model, n_indrnn in ((bi, 4), (mixed, 1)):
        clipped, count = clip_indrnn(model, b)
        assert count == n_indrnn and type(clipped) is type(model)
        before = [c for _, c in model.named_cells()]
        after = [c for _, c in clipped.named_cells()]
        assert sum(isinstance(c, IndRNN) for c in after) == n_indrnn
        for c0, c1 in zip(before, after):
            for f in dataclasses.fields(c0):
                v0, v1 = getattr(c0, f.name), getattr(c1, f.name)
                if isinstance(c0, IndRNN) and f.name == "weight_hh_diag":
                    u = np.asarray(v0, np.float64)
                    assert np.abs(u).max() > b > np.abs(u).min()  # else the test would pass vacuously
                    np.testing.assert_array_equal(np.asarray(v1, np.float64), np.clip(u, -b, b).astype(np.float32))
                elif f.metadata.get("static"):
                    assert v0 == v1
                else:
                    np.testing.assert_array_equal(np.asarray(v1), np.asarray(v0))
    lstm_only = make("lstm", 3, 4, key=k[3])
    assert clip_indrnn(lstm_only, b) == (lstm_only, 0)


def test_train_module_keeps_its_public_names_after_the_split():
    """``gradscope.experiments.train`` re-exports what moved to network/optim/runs; ``gs.train`` is its train."""
    from gradscope.experiments import network as net_mod
    from gradscope.experiments import optim, runs
    from gradscope.experiments import train as train_mod

    assert gs.train is train_mod.train and gs.Network is net_mod.Network is Network
    assert gs.Readout is net_mod.Readout is Readout and train_mod.network is net_mod.network
    assert train_mod.norm_clipping is optim.norm_clipping and train_mod.clip_indrnn is optim.clip_indrnn
    assert gs.TrainResult is runs.TrainResult and restore is runs.restore and evaluate is runs.evaluate


# ------------------------------------------------------------------------------------------ training


# one configuration shared by the tests below, so that the jitted update step is compiled once
T_SMALL = 10
KW = dict(steps=20, batch=8, lr=1e-2, schedule="step", decay_every=7, clip_norm=1.0, indrnn_clip=2.0)


def test_training_is_deterministic_for_a_fixed_key(capsys):
    task = tasks.make("adding", length=T_SMALL)
    events = []
    r1 = train(small_indrnn(T_SMALL), task, key=jax.random.key(5), progress=events.append, **KW)
    r2 = train(small_indrnn(T_SMALL), task, key=jax.random.key(5), **KW)
    r3 = train(small_indrnn(T_SMALL), task, key=jax.random.key(6), **KW)
    np.testing.assert_array_equal(r1.loss, r2.loss)
    np.testing.assert_array_equal(r1.grad_norm, r2.grad_norm)
    assert not np.array_equal(r1.loss, r3.loss)
    assert r1.loss.shape == r1.metric.shape == r1.grad_norm.shape == (20,)
    assert not r1.loss.flags.writeable
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "end"
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 21))
    assert capsys.readouterr().out == ""  # the library never prints
    json.dumps(r1.to_dict())


def test_resume_gives_the_same_curves_as_an_uninterrupted_run(tmp_path):
    task = tasks.make("adding", length=T_SMALL)
    snap = lambda rnn, xs: {
        "u_norm": float(jnp.linalg.norm(rnn.layers[0].weight_hh_diag)),  # noqa: E731
        "probe_mean": float(jnp.mean(xs)),
    }
    kw = KW | dict(snapshot_every=6, snapshot_fn=snap, checkpoint_every=5)
    full = train(small_indrnn(T_SMALL), task, key=jax.random.key(2), checkpoint_dir=tmp_path / "a", **kw)

    class Stop(Exception):
        pass

    def interrupt(event):
        if event["event"] == "step" and event["step"] == 13:
            raise Stop

    with pytest.raises(Stop):
        train(
            small_indrnn(T_SMALL), task, key=jax.random.key(2), checkpoint_dir=tmp_path / "b", progress=interrupt, **kw
        )
    assert ckpt.latest(tmp_path / "b") == 10
    resumed = train(
        small_indrnn(T_SMALL), task, checkpoint_dir=tmp_path / "b", resume=True, **kw
    )  # key from the checkpoint
    np.testing.assert_array_equal(resumed.loss, full.loss)
    np.testing.assert_array_equal(resumed.metric, full.metric)
    np.testing.assert_array_equal(resumed.grad_norm, full.grad_norm)
    assert resumed.snapshots == full.snapshots and [s["step"] for s in full.snapshots] == [0, 6, 12, 18, 20]
    for a, b in zip(jax.tree_util.tree_leaves(resumed.params), jax.tree_util.tree_leaves(full.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a different configuration cannot silently continue the run
    with pytest.raises(ckpt.CheckpointError, match="config"):
        train(small_indrnn(T_SMALL), task, checkpoint_dir=tmp_path / "b", resume=True, **(kw | {"lr": 0.5}))


def test_indrnn_clip_bounds_every_layer():
    rnn = small_indrnn(T_SMALL, u_min=1.5, u_max=2.0)  # starts outside the bound
    r = train(rnn, tasks.make("adding", length=T_SMALL), key=jax.random.key(0), **KW)
    bound = 2.0 ** (1 / T_SMALL)
    for layer in r.params.rnn.layers:
        assert np.max(np.abs(np.asarray(layer.weight_hh_diag))) <= bound + 1e-7
    assert np.max(np.abs(np.asarray(rnn.layers[0].weight_hh_diag))) > 1.4
    with pytest.raises(ConfigError, match="no IndRNN layer"):
        train(
            gs.cells.make("rnn-tanh", 2, 4, key=jax.random.key(0)),
            tasks.make("adding", length=T_SMALL),
            key=jax.random.key(0),
            steps=1,
            indrnn_clip=2.0,
        )


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    task = tasks.make("adding", length=10)
    rnn = gs.stack("rnn-relu", 2, 8, 1, key=jax.random.key(0))
    with pytest.raises(TrainingDiverged) as info:
        train(
            rnn,
            task,
            key=jax.random.key(0),
            steps=50,
            batch=8,
            optimizer="sgd",
            lr=10.0,
            checkpoint_dir=tmp_path,
            checkpoint_every=1,
        )
    err = info.value
    assert isinstance(err, GradscopeError)
    assert f"diverged at step {err.step}" in str(err) and "last good checkpoint" in str(err)
    assert err.checkpoint is not None and str(err.checkpoint) in str(err)
    good = ckpt.latest(tmp_path)
    assert good is not None and good < err.step and len(err.history["loss"]) == err.step
    # the kept checkpoint is finite and its loss is finite (it is not the diverged state)
    net, meta = restore(tmp_path, rnn, task, good)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree_util.tree_leaves(net))
    assert np.all(np.isfinite(meta["loss"])) and meta["step"] == good


def test_bad_options_raise_config_errors():
    task, rnn = tasks.make("adding", length=5), small_indrnn(5)
    for kw, msg in [
        (dict(steps=0), "steps=0"),
        (dict(steps=2, lr=-1.0), "lr=-1.0"),
        (dict(steps=2, optimizer="adagrad"), "optimizer='adagrad'"),
        (dict(steps=2, schedule="linear"), "schedule='linear'"),
        (dict(steps=2, checkpoint_every=1), "checkpoint_dir=None"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            train(rnn, task, key=jax.random.key(0), **kw)


# ----------------------------------------------------------------------------------------- checkpoint


def test_checkpoint_roundtrip_names_and_atomicity(tmp_path):
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "inner": (jnp.ones(2, jnp.float32), jnp.int32(7))}
    for s in (1, 2, 3):
        ckpt.save(tmp_path, s, jax.tree_util.tree_map(lambda a: a * s, tree), {"note": s}, keep=2)
    assert ckpt.steps(tmp_path) == [2, 3] and ckpt.latest(tmp_path) == 3
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    with np.load(tmp_path / "ckpt-00000003.npz", allow_pickle=False) as z:  # plain arrays, no pickle
        assert len(z.files) == 3
    side = json.loads((tmp_path / "ckpt-00000003.json").read_text())
    assert side["names"] == ["['inner'][0]", "['inner'][1]", "['w']"]
    out, meta = ckpt.load(tmp_path, tree)
    assert meta == {"note": 3}
    np.testing.assert_array_equal(np.asarray(out["w"]), 3 * np.arange(6.0).reshape(2, 3))
    assert out["inner"][0].dtype == jnp.float32 and int(out["inner"][1]) == 21
    with pytest.raises(ckpt.CheckpointError, match="does not match"):
        ckpt.load(tmp_path, {"w": tree["w"]})
    with pytest.raises(ckpt.CheckpointError, match="shape"):
        ckpt.load(tmp_path, {"w": jnp.zeros((3, 2)), "inner": tree["inner"]})


# ------------------------------------------------------------------------------------ quick adding run


@pytest.mark.slow
def test_indrnn_learns_the_adding_problem_quickly():
    """Li et al. 2018 §5.1 in miniature: 2×32 IndRNN, T = 50, |u| ≤ 2^{1/T}; MSE falls far below 0.167."""
    T = 50
    task = tasks.make("adding", length=T)
    r = train(small_indrnn(T, hidden=32), task, key=jax.random.key(0), steps=500, batch=64, lr=5e-3, indrnn_clip=2.0)
    assert r.loss[:20].mean() > 0.1
    assert r.loss[-50:].mean() < 0.03
    held_out = evaluate(r.params, task, key=jax.random.key(123), batch=1000)
    assert held_out["mse"] < 0.03 < task.baseline / 5


def test_diagnostics_snapshot_uses_analyse():
    if "analyse" not in dir(gs):
        pytest.skip("gradscope.analyse is not available yet")
    task = tasks.make("adding", length=T_SMALL)
    r = train(small_indrnn(T_SMALL), task, key=jax.random.key(0), snapshot_every=20, probe_batch=2, **KW)
    assert [s["step"] for s in r.snapshots] == [0, 20]
    s = r.snapshots[0]
    assert len(s["lag_profile"]) == T_SMALL and isinstance(s["horizon"], int)
    assert np.isfinite(s["lyapunov_max"]) and s["verdict"] in ("vanishing", "exploding", "stable", "inconclusive")
    json.dumps(r.to_dict())
