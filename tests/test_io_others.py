"""Keras / Flax / Equinox import, and `inspect_file` / `load_model`.

Two kinds of truth:
* framework-free fixtures built from a *PyTorch* model's weights by the documented mapping
  (the frameworks' documented layouts), whose gradscope import must reproduce PyTorch's outputs; for Keras'
  reset-before GRU (no PyTorch equivalent) a float64 NumPy transcription of Keras' equations;
* the real frameworks when installed (pytest.importorskip): their own forward pass.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
torch = pytest.importorskip("torch")

import gradscope as gs  # noqa: E402
from gradscope.cells.gru import GRU, GRUChung  # noqa: E402
from gradscope.cells.lstm import LSTM  # noqa: E402
from gradscope.io import from_equinox, from_flax, from_keras, from_torch, inspect_file, load_model, save_safetensors  # noqa: E402
from gradscope.io.formats import ImportFormatError, write_npz, write_safetensors  # noqa: E402

I, H, T, B = 3, 4, 5, 2


@pytest.fixture(scope="module")
def torch_ref():
    """Double-precision torch LSTM, GRU and RNN(tanh) with one input batch and their outputs."""
    torch.manual_seed(0)
    mods = {
        "lstm": torch.nn.LSTM(I, H, batch_first=True).double(),
        "gru": torch.nn.GRU(I, H, batch_first=True).double(),
        "rnn": torch.nn.RNN(I, H, batch_first=True).double(),
    }
    xs = np.random.default_rng(0).standard_normal((B, T, I))
    outs = {}
    with torch.no_grad():
        for k, m in mods.items():
            out, hn = m(torch.from_numpy(xs))
            outs[k] = (out.numpy(), hn[1][0].numpy() if isinstance(hn, tuple) else None)
    sds = {k: {n: v.numpy() for n, v in m.state_dict().items()} for k, m in mods.items()}
    return sds, xs, outs


def _run(model, xs):
    traj = gs.rollout(model, xs)
    c = np.asarray(traj["c"][..., -1, :]) if "c" in traj.blocks else None
    return np.asarray(traj["h"][..., 1:, :]), c


def _check(model, torch_ref, kind, tol=1e-10):
    _, xs, outs = torch_ref
    h, c = _run(model, xs)
    np.testing.assert_allclose(h, outs[kind][0], atol=tol)
    if outs[kind][1] is not None:
        np.testing.assert_allclose(c, outs[kind][1], atol=tol)


def _split(a, k):
    return np.split(a, k, axis=0)


# ------------------------------------------------------------------ framework-free fixtures
def test_keras_layout_lstm_and_simple_rnn(torch_ref):
    sd = torch_ref[0]
    p = sd["lstm"]
    m = from_keras([p["weight_ih_l0"].T, p["weight_hh_l0"].T, p["bias_ih_l0"] + p["bias_hh_l0"]])
    assert isinstance(m, LSTM)
    _check(m, torch_ref, "lstm")
    p = sd["rnn"]
    keras_names = {
        "sequential/simple_rnn/simple_rnn_cell/kernel": p["weight_ih_l0"].T,
        "sequential/simple_rnn/simple_rnn_cell/recurrent_kernel": p["weight_hh_l0"].T,
        "sequential/simple_rnn/simple_rnn_cell/bias": p["bias_ih_l0"] + p["bias_hh_l0"],
    }
    _check(from_keras(keras_names), torch_ref, "rnn")


def _rzn_to_zrn(a):
    r, z, n = _split(a, 3)
    return np.concatenate([z, r, n])


def test_keras_layout_gru_reset_after(torch_ref):
    p = torch_ref[0]["gru"]
    k = _rzn_to_zrn(p["weight_ih_l0"]).T
    rk = _rzn_to_zrn(p["weight_hh_l0"]).T
    b = np.stack([_rzn_to_zrn(p["bias_ih_l0"]), _rzn_to_zrn(p["bias_hh_l0"])])
    m = from_keras({"gru_cell/kernel": k, "gru_cell/recurrent_kernel": rk, "gru_cell/bias": b})
    assert isinstance(m, GRU)
    _check(m, torch_ref, "gru")
    with pytest.raises(ImportFormatError, match="reset_after=False was given"):
        from_keras([k, rk, b], reset_after=False)


def _keras_gru_v3_numpy(kernel, rk, bias, xs):
    """Keras GRUCell(reset_after=False) transcribed from keras/src/layers/rnn/gru.py, float64."""
    u = rk.shape[0]
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    h = np.zeros((xs.shape[0], u))
    hs = []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        x_z, x_r, x_h = (
            x @ kernel[:, :u] + bias[:u],
            x @ kernel[:, u : 2 * u] + bias[u : 2 * u],
            x @ kernel[:, 2 * u :] + bias[2 * u :],
        )
        z = sig(x_z + h @ rk[:, :u])
        r = sig(x_r + h @ rk[:, u : 2 * u])
        hh = np.tanh(x_h + (r * h) @ rk[:, 2 * u :])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return np.stack(hs, 1)


def test_keras_layout_gru_reset_before():
    r = np.random.default_rng(3)
    k, rk, b = r.standard_normal((I, 3 * H)), r.standard_normal((H, 3 * H)), r.standard_normal(3 * H)
    xs = r.standard_normal((B, T, I))
    m = from_keras([k, rk, b])
    assert isinstance(m, GRUChung)
    np.testing.assert_allclose(_run(m, xs)[0], _keras_gru_v3_numpy(k, rk, b, xs), atol=1e-12)


def _flax_lstm_tree(p, if_name="if"):
    Wi, Wh = _split(p["weight_ih_l0"], 4), _split(p["weight_hh_l0"], 4)
    b = _split(p["bias_ih_l0"] + p["bias_hh_l0"], 4)
    tree = {}
    for g, wi, wh, bb in zip(("i", "f", "g", "o"), Wi, Wh, b):
        tree[if_name if g == "f" else "i" + g] = {"kernel": wi.T}
        tree["h" + g] = {"kernel": wh.T, "bias": bb}
    return tree


def test_flax_layouts(torch_ref):
    sd = torch_ref[0]
    p = sd["lstm"]
    _check(from_flax({"params": {"cell": _flax_lstm_tree(p)}}), torch_ref, "lstm")  # linen, inside nn.RNN
    _check(from_flax(_flax_lstm_tree(p, "if_")), torch_ref, "lstm")  # nnx.LSTMCell
    nnx_opt = {
        "dense_i": {"kernel": p["weight_ih_l0"].T},
        "dense_h": {"kernel": p["weight_hh_l0"].T, "bias": p["bias_ih_l0"] + p["bias_hh_l0"]},
    }
    _check(from_flax(nnx_opt), torch_ref, "lstm")
    g = sd["gru"]
    (Wir, Wiz, Win), (Whr, Whz, Whn) = _split(g["weight_ih_l0"], 3), _split(g["weight_hh_l0"], 3)
    (bir, biz, bin_), (bhr, bhz, bhn) = _split(g["bias_ih_l0"], 3), _split(g["bias_hh_l0"], 3)
    linen_gru = {
        "ir": {"kernel": Wir.T, "bias": bir + bhr},
        "iz": {"kernel": Wiz.T, "bias": biz + bhz},
        "in": {"kernel": Win.T, "bias": bin_},
        "hr": {"kernel": Whr.T},
        "hz": {"kernel": Whz.T},
        "hn": {"kernel": Whn.T, "bias": bhn},
    }
    _check(from_flax({"params": linen_gru}), torch_ref, "gru")


def test_nnx_gru_layout_matches_torch_with_zero_b_hn(torch_ref):
    """nnx.GRUCell has no b_hn slot: exact against a torch GRU whose b_hn = 0."""
    g = {k: v.copy() for k, v in torch_ref[0]["gru"].items()}
    g["bias_hh_l0"][2 * H :] = 0
    torch_model = from_torch(g)
    nnx_gru = {
        "dense_i": {
            "kernel": g["weight_ih_l0"].T,
            "bias": g["bias_ih_l0"] + np.concatenate([g["bias_hh_l0"][: 2 * H], np.zeros(H)]),
        },
        "dense_h": {"kernel": g["weight_hh_l0"].T},
    }
    xs = torch_ref[1]
    np.testing.assert_allclose(_run(from_flax(nnx_gru), xs)[0], _run(torch_model, xs)[0], atol=1e-12)


def test_equinox_layouts(torch_ref):
    p = torch_ref[0]["lstm"]
    _check(
        from_equinox(
            {"weight_ih": p["weight_ih_l0"], "weight_hh": p["weight_hh_l0"], "bias": p["bias_ih_l0"] + p["bias_hh_l0"]}
        ),
        torch_ref,
        "lstm",
    )
    g = torch_ref[0]["gru"]
    bias = g["bias_ih_l0"] + np.concatenate([g["bias_hh_l0"][: 2 * H], np.zeros(H)])
    _check(
        from_equinox(
            {
                "rnn.weight_ih": g["weight_ih_l0"],
                "rnn.weight_hh": g["weight_hh_l0"],
                "rnn.bias": bias,
                "rnn.bias_n": g["bias_hh_l0"][2 * H :],
            },
            prefix="rnn.",
        ),
        torch_ref,
        "gru",
    )


def test_bad_layouts(torch_ref, tmp_path):
    p = torch_ref[0]["lstm"]
    with pytest.raises(ImportFormatError, match=r"bias.*shape \(15,\), expected \(16,\)"):
        from_keras([p["weight_ih_l0"].T, p["weight_hh_l0"].T, np.zeros(15)])
    with pytest.raises(ImportFormatError, match=r"kernel.*expected \(input_size, 16\)"):
        from_keras([p["weight_ih_l0"], p["weight_hh_l0"].T])
    with pytest.raises(ImportFormatError, match="no Keras recurrent layer"):
        from_keras({"dense/kernel": np.zeros((3, 2))})
    tree = _flax_lstm_tree(p)
    del tree["hg"]["bias"]
    with pytest.raises(ImportFormatError, match=r"missing tensor 'hg.bias' \(expected shape \(4,\)\)"):
        from_flax(tree)
    tree = _flax_lstm_tree(p)
    tree["hi"]["kernel"] = tree["hi"]["kernel"][:, :3]
    with pytest.raises(ImportFormatError, match=r"'hi.kernel' has shape \(4, 3\), expected \(4, 4\)"):
        from_flax(tree)
    tree = _flax_lstm_tree(p)
    tree["ho"]["bias"] = np.full(H, np.nan)
    with pytest.raises(ImportFormatError, match="NaN"):
        from_flax(tree)
    with pytest.raises(ImportFormatError, match=r"unexpected field.*'scale'"):
        from_equinox({"weight_ih": p["weight_ih_l0"], "weight_hh": p["weight_hh_l0"], "scale": np.ones(3)})
    with pytest.raises(ImportFormatError, match="kind='gru'"):
        from_equinox({"weight_ih": p["weight_ih_l0"], "weight_hh": p["weight_hh_l0"]}, kind="gru")


# ---------------------------------------------------------------------- inspect / load_model
def test_inspect_and_load_model(torch_ref, tmp_path):
    sd = torch_ref[0]
    mod = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2)
    write_safetensors(
        tmp_path / "t.safetensors",
        {f"rnn.{k}": v.detach().numpy() for k, v in mod.state_dict().items()}
        | {"head.weight": np.zeros((1, 4), np.float32)},
    )
    info = inspect_file(tmp_path / "t.safetensors")
    assert info["framework"] == "torch" and info["problem"] is None
    m = info["mapping"]
    assert (m["kind"], m["num_layers"], m["bidirectional"], m["proj_size"], m["hidden_size"], m["input_size"]) == (
        "lstm",
        2,
        True,
        2,
        H,
        I,
    )
    assert m["structure"] == "DeepBidirectional" and m["prefix"] == "rnn." and m["ignored_tensors"] == ["head.weight"]
    assert {"name": "rnn.weight_hr_l1_reverse", "shape": [2, H], "dtype": "float32"} in info["tensors"]
    # a flax tree flattened into an .npz is detected and imported
    write_npz(
        tmp_path / "f.npz",
        {f"params.cell.{g}.{n}": v for g, d in _flax_lstm_tree(sd["lstm"]).items() for n, v in d.items()},
    )
    assert inspect_file(tmp_path / "f.npz")["framework"] == "flax"
    _check(load_model(tmp_path / "f.npz"), torch_ref, "lstm")
    # unmappable but readable: described, with the problem
    write_npz(tmp_path / "u.npz", {"foo": np.zeros(3)})
    info = inspect_file(tmp_path / "u.npz")
    assert info["mapping"] is None and "no supported layout" in info["problem"]
    write_npz(tmp_path / "b.npz", {"weight_ih_l0": np.zeros((16, 3)), "weight_hh_l0": np.zeros((16, 5))})
    assert "weight_hh_l0" in inspect_file(tmp_path / "b.npz")["problem"]
    save_safetensors(from_torch(sd["gru"]), tmp_path / "g.safetensors")
    assert inspect_file(tmp_path / "g.safetensors")["mapping"]["kind"] == "gru"


def _classic_files() -> dict[str, tuple[dict, dict]]:
    """name -> (tensors, metadata) of a weight file for every layout of the four frameworks' RNN/LSTM/GRU."""
    torch.manual_seed(1)

    def sd(module, prefix=""):
        return {prefix + k: v.detach().numpy() for k, v in module.state_dict().items()}

    lstm, gru, rnn = sd(torch.nn.LSTM(I, H)), sd(torch.nn.GRU(I, H)), sd(torch.nn.RNN(I, H))
    flax_gru = {f"params.{g}.kernel": w.T for g, w in zip(("ir", "iz", "in"), _split(gru["weight_ih_l0"], 3))}
    flax_gru |= {f"params.{g}.kernel": w.T for g, w in zip(("hr", "hz", "hn"), _split(gru["weight_hh_l0"], 3))}
    flax_gru |= {f"params.{g}.bias": b for g, b in zip(("ir", "iz", "in"), _split(gru["bias_ih_l0"], 3))}
    flax_gru["params.hn.bias"] = gru["bias_hh_l0"][2 * H :]
    keras = {"kernel": gru["weight_ih_l0"].T, "recurrent_kernel": gru["weight_hh_l0"].T}
    return {
        "torch-rnn-relu": (rnn, {"nonlinearity": "relu"}),
        "torch-lstm-float64": ({k: v.astype(np.float64) for k, v in lstm.items()}, {}),
        "torch-lstm-float16": ({k: v.astype(np.float16) for k, v in lstm.items()}, {}),
        "torch-gru-no-bias": (sd(torch.nn.GRU(I, H, bias=False)), {}),
        "torch-stack": (sd(torch.nn.LSTM(I, H, num_layers=3), "enc.rnn.") | {"head.weight": np.zeros((1, H))}, {}),
        "torch-bidirectional": (sd(torch.nn.GRU(I, H, bidirectional=True)), {}),
        "torch-deep-bidirectional-proj": (sd(torch.nn.LSTM(I, 5, num_layers=2, bidirectional=True, proj_size=2)), {}),
        "torch-rnn-cell": (sd(torch.nn.RNNCell(I, H)), {}),
        "torch-lstm-cell": (sd(torch.nn.LSTMCell(I, H)), {}),
        "torch-gru-cell": (sd(torch.nn.GRUCell(I, H)), {}),
        "keras-lstm": ({f"lstm/lstm_cell/{k}": v for k, v in _split_keras(lstm).items()}, {}),
        "keras-rnn": ({f"simple_rnn/{k}": v for k, v in _split_keras(rnn).items()}, {}),
        "keras-gru-reset-after": (keras | {"bias": np.stack([gru["bias_ih_l0"], gru["bias_hh_l0"]])}, {}),
        "keras-gru-reset-before": (keras | {"bias": gru["bias_ih_l0"]}, {}),
        "flax-linen-lstm": (
            {f"params.cell.{g}.{n}": v for g, d in _flax_lstm_tree(lstm).items() for n, v in d.items()},
            {},
        ),
        "flax-nnx-lstm": (
            {f"{g}.{n}": v for g, d in _flax_lstm_tree(lstm, "if_").items() for n, v in d.items()},
            {},
        ),
        "flax-linen-gru": (flax_gru, {}),
        "flax-nnx-optimized-lstm": (
            {"dense_i/kernel": lstm["weight_ih_l0"].T, "dense_h/kernel": lstm["weight_hh_l0"].T}
            | {"dense_h/bias": lstm["bias_hh_l0"]},
            {},
        ),
        "flax-nnx-gru": (
            {"dense_i/kernel": gru["weight_ih_l0"].T, "dense_i/bias": gru["bias_ih_l0"]}
            | {"dense_h/kernel": gru["weight_hh_l0"].T},
            {},
        ),
        "equinox-lstm": ({"weight_ih": lstm["weight_ih_l0"], "weight_hh": lstm["weight_hh_l0"]}, {}),
        "equinox-gru": (
            {"weight_ih": gru["weight_ih_l0"], "weight_hh": gru["weight_hh_l0"], "bias": gru["bias_ih_l0"]}
            | {"bias_n": gru["bias_hh_l0"][2 * H :]},
            {},
        ),
    }


def _split_keras(p):
    return {"kernel": p["weight_ih_l0"].T, "recurrent_kernel": p["weight_hh_l0"].T, "bias": p["bias_ih_l0"]}


@pytest.mark.parametrize("name", list(_classic_files()))
def test_inspect_describes_the_built_model(tmp_path, name):
    """`inspect_file` describes the importer's plan without building it: its mapping equals the description of the
    model `load_model` builds (tests/_io_ref.py), for every layout of the four frameworks."""
    from tests._io_ref import assert_inspect_describes_the_model

    tensors, meta = _classic_files()[name]
    path = tmp_path / f"{name}.safetensors"
    write_safetensors(path, {k: np.ascontiguousarray(v) for k, v in tensors.items()}, meta)
    mapping = assert_inspect_describes_the_model(path)
    assert mapping["dtype"] == ("float64" if "float64" in name else "float32")


# -------------------------------------------------------------------------- real frameworks
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_real_keras(tmp_path):
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("these checks use the JAX backend of Keras")
    xs = np.random.default_rng(1).standard_normal((B, T, I)).astype(np.float32)
    layers = {
        "lstm": keras.layers.LSTM(H, return_sequences=True, name="lstm"),
        "gru": keras.layers.GRU(H, return_sequences=True, name="gru"),
        "gru_v3": keras.layers.GRU(H, return_sequences=True, reset_after=False, name="gru_v3"),
        "rnn": keras.layers.SimpleRNN(H, return_sequences=True, name="rnn"),
    }
    inp = keras.Input((T, I))
    model = keras.Model(inp, [layer(inp) for layer in layers.values()])
    for layer in layers.values():  # non-zero biases, so the bias mapping is tested too
        w = layer.get_weights()
        w[-1] = np.random.default_rng(2).standard_normal(w[-1].shape).astype(np.float32)
        layer.set_weights(w)
    want = [np.asarray(o) for o in model(xs)]
    model.save_weights(str(tmp_path / "m.weights.h5"))
    # .weights.h5 names layers by type and creation order, not by their names
    h5_names = {"lstm": "lstm", "gru": "gru", "gru_v3": "gru_1", "rnn": "simple_rnn"}
    for (name, layer), w in zip(layers.items(), want):
        got = _run(from_keras(layer.get_weights()), xs)[0]
        np.testing.assert_allclose(got, w, atol=2e-6)
        got = _run(from_keras(tmp_path / "m.weights.h5", layer=h5_names[name]), xs)[0]
        np.testing.assert_allclose(got, w, atol=2e-6)


def test_h5_refuses_links_and_corruption(tmp_path):
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "l.weights.h5"
    with h5py.File(p, "w") as f:
        f["layers/lstm/cell/vars/0"] = np.zeros((3, 16), np.float32)
        f["layers/lstm/cell/vars/1"] = np.zeros((4, 16), np.float32)
        f["layers/lstm/cell/vars/2"] = h5py.ExternalLink("/etc/passwd", "/x")
    with pytest.raises(ImportFormatError, match="ExternalLink"):
        from_keras(p)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(64, np.float32).tobytes())
    with h5py.File(p, "w") as f:  # a dataset whose bytes live in another file on disk
        f["layers/lstm/cell/vars/0"] = np.zeros((3, 16), np.float32)
        f.create_dataset("layers/lstm/cell/vars/1", shape=(4, 16), dtype="<f4", external=[(str(secret), 0, 256)])
    with pytest.raises(ImportFormatError, match="outside the file"):
        from_keras(p)
    with h5py.File(p, "w") as f:
        f["layers/lstm/cell/vars/0"] = np.zeros((3, 16), np.float32)
        f["layers/lstm/cell/vars/1"] = h5py.SoftLink("/layers/lstm/cell/vars/0")
    with pytest.raises(ImportFormatError, match="SoftLink"):
        from_keras(p)
    good = tmp_path / "g.weights.h5"
    with h5py.File(good, "w") as f:
        f["layers/lstm/cell/vars/0"] = np.zeros((3, 16), np.float32)
        f["layers/lstm/cell/vars/1"] = np.zeros((4, 16), np.float32)
    assert isinstance(from_keras(good), LSTM)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImportFormatError, match="HDF5"):
        from_keras(good)


def _scan_flax(cell_fn, carry, xs):
    hs = []
    for t in range(xs.shape[1]):
        carry, y = cell_fn(carry, xs[:, t])
        hs.append(np.asarray(y))
    return np.stack(hs, 1)


@pytest.mark.slow
def test_real_flax():
    flax = pytest.importorskip("flax")
    import flax.linen as nn
    from flax import nnx

    xs = np.random.default_rng(4).standard_normal((B, T, I)).astype(np.float32)
    for cls in (nn.LSTMCell, nn.OptimizedLSTMCell, nn.GRUCell):
        cell = cls(H, bias_init=nn.initializers.normal(0.5))
        carry = cell.initialize_carry(jax.random.key(0), (B, I))
        params = cell.init(jax.random.key(1), carry, xs[:, 0])
        want = _scan_flax(lambda c, x: cell.apply(params, c, x), carry, xs)
        np.testing.assert_allclose(_run(from_flax(params), xs)[0], want, atol=2e-6)
        raw = flax.serialization.to_bytes(params)
        np.testing.assert_allclose(_run(from_flax(raw), xs)[0], want, atol=2e-6)
    for cls in (nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell):
        cell = cls(I, H, rngs=nnx.Rngs(0), bias_init=nnx.initializers.normal(0.5))
        carry = cell.initialize_carry((B, I), rngs=nnx.Rngs(1))
        want = _scan_flax(cell, carry, xs)
        np.testing.assert_allclose(_run(from_flax(cell), xs)[0], want, atol=2e-6)


def test_real_equinox():
    eqx = pytest.importorskip("equinox")
    xs = np.random.default_rng(5).standard_normal((T, I)).astype(np.float32)
    for cls in (eqx.nn.LSTMCell, eqx.nn.GRUCell):
        cell = cls(I, H, key=jax.random.key(3))
        state = (np.zeros(H, np.float32),) * (2 if cls is eqx.nn.LSTMCell else 1)
        hs = []
        for t in range(T):
            out = cell(xs[t], state if len(state) == 2 else state[0])
            state = out if isinstance(out, tuple) else (out,)
            hs.append(np.asarray(state[0]))
        got = _run(from_equinox(cell), xs)[0]
        np.testing.assert_allclose(got, np.stack(hs), atol=2e-6)
