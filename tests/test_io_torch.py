"""PyTorch import/export: gradscope reproduces nn.RNN / nn.LSTM (proj_size) / nn.GRU outputs, final
states and ∂h_T/∂h_k, for 1–3 layers, both directions, through state dicts and every file format.

The truth is PyTorch itself (CPU, non-cuDNN) and torch.autograd.functional.jacobian.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradscope as gs  # noqa: E402
from gradscope.io import DeepBidirectional, from_torch, save_npz, save_safetensors, to_torch_state_dict  # noqa: E402
from gradscope.io.formats import ImportFormatError  # noqa: E402
from gradscope.nets import Bidirectional, Stack  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

# (label, constructor kwargs) — small sizes, every supported kind
KINDS = {
    "rnn-tanh": dict(cls="RNN", nonlinearity="tanh"),
    "rnn-relu": dict(cls="RNN", nonlinearity="relu"),
    "lstm": dict(cls="LSTM"),
    "lstm-proj": dict(cls="LSTM", proj_size=2),
    "gru": dict(cls="GRU"),
}


def make_torch(label, input_size, hidden, layers, bidir, seed=0, bias=True):
    kw = dict(KINDS[label])
    cls = getattr(torch.nn, kw.pop("cls"))
    torch.manual_seed(seed)
    return cls(input_size, hidden, num_layers=layers, bidirectional=bidir, batch_first=True, bias=bias, **kw).eval()


def torch_forward(mod, xs):
    with torch.no_grad():
        out, hn = mod(torch.from_numpy(xs))
    if isinstance(hn, tuple):
        return out.numpy(), hn[0].numpy(), hn[1].numpy()
    return out.numpy(), hn.numpy(), None


def gs_forward(model, xs):
    """(output (B,T,·), h_n (L·D,B,·), c_n or None) shaped like torch's, from a gradscope model."""
    if isinstance(model, Bidirectional):
        model = DeepBidirectional((model,))
    if isinstance(model, DeepBidirectional):
        ro = model.rollout(xs)
        has_c = "fwd.c" in ro.trajectories[0].blocks
        return (
            np.asarray(ro.output),
            np.asarray(ro.final_states("h")),
            np.asarray(ro.final_states("c")) if has_c else None,
        )
    traj = gs.rollout(model, xs)
    layers = model.layers if isinstance(model, Stack) else (model,)
    pre = (lambda l: f"layer{l}.") if isinstance(model, Stack) else (lambda l: "")
    L = len(layers)
    out = np.asarray(traj[f"{pre(L - 1)}h"][:, 1:])
    hn = np.stack([np.asarray(traj[f"{pre(l)}h"][:, -1]) for l in range(L)])
    has_c = f"{pre(0)}c" in traj.blocks
    cn = np.stack([np.asarray(traj[f"{pre(l)}c"][:, -1]) for l in range(L)]) if has_c else None
    return out, hn, cn


def assert_same(mod, model, xs, tol):
    want, got = torch_forward(mod, xs), gs_forward(model, xs)
    for name, w, g in zip(("output", "h_n", "c_n"), want, got):
        if w is None:
            assert g is None
            continue
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, atol=tol, rtol=0, err_msg=name)


def expected_type(layers, bidir):
    if bidir:
        return Bidirectional if layers == 1 else DeepBidirectional
    return Stack if layers > 1 else gs.cells.Cell


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("label", list(KINDS))
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, False), (3, False), (1, True), (2, True), (3, True)])
def test_state_dict_float32(label, layers, bidir, rng):
    I, H = (3, 4) if layers != 2 else (2, 5)
    mod = make_torch(label, I, H, layers, bidir, seed=layers + 10 * bidir)
    nonlin = KINDS[label].get("nonlinearity")
    model = from_torch(mod.state_dict(), nonlinearity=nonlin)
    assert isinstance(model, expected_type(layers, bidir))
    xs = rng.standard_normal((2, 6, I)).astype(np.float32)
    assert gs_forward(model, xs)[0].dtype == np.float32
    assert_same(mod, model, xs, 1e-5)


@pytest.mark.parametrize(
    "label,layers,bidir",
    [
        ("rnn-tanh", 2, True),
        ("rnn-relu", 1, False),
        ("lstm", 3, False),
        ("lstm-proj", 2, True),
        ("gru", 2, False),
        ("gru", 1, True),
    ],
)
def test_state_dict_float64(label, layers, bidir, rng):
    mod = make_torch(label, 3, 4, layers, bidir, seed=7).double()
    model = from_torch(mod.state_dict(), nonlinearity=KINDS[label].get("nonlinearity"))
    xs = rng.standard_normal((2, 7, 3))
    gs_out = gs_forward(model, xs)
    assert gs_out[0].dtype == np.float64
    assert_same(mod, model, xs, 1e-10)


def test_no_bias_and_inferred_sizes(rng):
    mod = make_torch("lstm-proj", 3, 5, 2, False, bias=False)
    model = from_torch({k: v.numpy() for k, v in mod.state_dict().items()})  # numpy arrays work too
    assert isinstance(model, Stack)
    assert [c.proj_size for c in model.layers] == [2, 2]
    assert model.layers[1].input_size == 2
    assert_same(mod, model, rng.standard_normal((1, 5, 3)).astype(np.float32), 1e-5)


def test_cell_modules(rng):
    for cls, state in ((torch.nn.LSTMCell, 2), (torch.nn.GRUCell, 1), (torch.nn.RNNCell, 1)):
        torch.manual_seed(1)
        mod = cls(3, 4).double()
        model = from_torch(mod.state_dict())
        x = rng.standard_normal((3,))
        hs = tuple(rng.standard_normal((4,)) for _ in range(state))
        with torch.no_grad():
            arg = tuple(torch.from_numpy(h)[None] for h in hs)
            want = mod(torch.from_numpy(x)[None], arg if state == 2 else arg[0])
        want = want if isinstance(want, tuple) else (want,)
        got, _ = model(jnp.asarray(x), hs)
        for w, g in zip(want, got):
            np.testing.assert_allclose(np.asarray(g), w.numpy()[0], atol=1e-12)


def test_prefix_in_a_larger_state_dict(rng):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.GRU(3, 4, batch_first=True)
            self.head = torch.nn.Linear(4, 2)

    net = Net()
    model = from_torch(net.state_dict())  # the head is outside the detected prefix "rnn."
    assert_same(net.rnn, model, rng.standard_normal((1, 4, 3)).astype(np.float32), 1e-5)

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.LSTM(3, 4)
            self.dec = torch.nn.GRU(4, 4)

    two = Two()
    with pytest.raises(ImportFormatError, match="prefix"):
        from_torch(two.state_dict())
    assert isinstance(from_torch(two.state_dict(), prefix="dec."), gs.cells.gru.GRU)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """A few torch models written by *torch's and safetensors' own* writers, in every format."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("torch_files")
    out = []
    for label, layers, bidir in (("lstm-proj", 2, True), ("gru", 2, False), ("rnn-relu", 1, True)):
        mod = make_torch(label, 3, 4, layers, bidir, seed=3)
        sd = mod.state_dict()
        base = d / f"{label}-{layers}-{bidir}"
        save_file({k: v.contiguous() for k, v in sd.items()}, f"{base}.safetensors")
        np.savez(f"{base}.npz", **{k: v.numpy() for k, v in sd.items()})
        torch.save(sd, f"{base}.pt")
        if label == "rnn-relu":  # nonlinearity from a sidecar JSON
            for ext in ("safetensors", "npz", "pt"):
                with open(f"{base}.{ext}.json", "w") as fh:
                    json.dump({"kind": "rnn", "nonlinearity": "relu"}, fh)
        out.append((mod, base))
    return out


@pytest.mark.parametrize("ext", ["safetensors", "npz", "pt"])
def test_files(saved_models, ext, rng):
    for mod, base in saved_models:
        model = from_torch(f"{base}.{ext}")
        assert_same(mod, model, rng.standard_normal((2, 5, 3)).astype(np.float32), 1e-5)


def test_export_round_trip(tmp_path, rng):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    for label, layers, bidir in (("rnn-relu", 2, True), ("lstm-proj", 3, False), ("gru", 1, True)):
        mod = make_torch(label, 3, 4, layers, bidir, seed=5)
        model = from_torch(mod.state_dict(), nonlinearity=KINDS[label].get("nonlinearity"))
        sd = to_torch_state_dict(model)
        assert set(sd) == set(mod.state_dict())
        fresh = make_torch(label, 3, 4, layers, bidir, seed=99)
        fresh.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
        xs = rng.standard_normal((2, 5, 3)).astype(np.float32)
        for a, b in zip(torch_forward(mod, xs), torch_forward(fresh, xs)):
            if a is not None:
                np.testing.assert_array_equal(a, b)
        path = tmp_path / f"{label}.safetensors"
        save_safetensors(model, path)
        loaded = load_file(str(path))  # the reference reader agrees with our writer
        assert set(loaded) == set(sd) and all(np.array_equal(loaded[k], sd[k]) for k in sd)
        with safe_open(str(path), framework="np") as f:
            assert f.metadata()["kind"] == {"rnn-relu": "rnn", "lstm-proj": "lstm", "gru": "gru"}[label]
        again = from_torch(path)  # nonlinearity comes back from the metadata
        assert_same(mod, again, xs, 1e-5)
        save_npz(model, tmp_path / f"{label}.npz")
        assert_same(mod, from_torch(tmp_path / f"{label}.npz"), xs, 1e-5)


def test_deep_bidirectional_layers(rng):
    mod = make_torch("lstm", 3, 4, 3, True, seed=2).double()
    model = from_torch(mod.state_dict())
    xs = rng.standard_normal((6, 3))
    pairs = model.layer_models_and_inputs(xs)
    assert len(pairs) == 3 and all(isinstance(m, Bidirectional) for m, _ in pairs)
    assert [u.shape for _, u in pairs] == [(6, 3), (6, 8), (6, 8)]
    np.testing.assert_allclose(np.asarray(pairs[0][1]), xs)
    # layer 2's input is the torch output of the first two layers
    sub = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    sub.load_state_dict({k: v for k, v in mod.state_dict().items() if "_l2" not in k})
    with torch.no_grad():
        want = sub(torch.from_numpy(xs)[None])[0][0].numpy()
    np.testing.assert_allclose(np.asarray(pairs[2][1]), want, atol=1e-12)


# ------------------------------------------------------------------------------- ∂h_T/∂h_k
def _torch_jacobian(mod, xs, k, state):
    """∂S_T/∂S_k by torch autograd: run torch from state S_k over x_{k+1..T}."""
    x = torch.from_numpy(xs[k:])[None]
    flat = torch.from_numpy(np.concatenate([np.ravel(s) for s in state]))
    L = mod.num_layers
    h_out = mod.proj_size or mod.hidden_size if isinstance(mod, torch.nn.LSTM) else mod.hidden_size

    def f(s):
        h = s[: L * h_out].reshape(L, 1, h_out)
        if isinstance(mod, torch.nn.LSTM):
            c = s[L * h_out :].reshape(L, 1, mod.hidden_size)
            _, (hT, cT) = mod(x, (h, c))
            return torch.cat([hT.reshape(-1), cT.reshape(-1)])
        return mod(x, h)[1].reshape(-1)

    return torch.autograd.functional.jacobian(f, flat).numpy()


@pytest.mark.parametrize("label,layers", [("rnn-tanh", 1), ("lstm-proj", 1), ("gru", 2), ("rnn-relu", 2)])
def test_jacobian_matches_torch_autograd(label, layers, rng):
    mod = make_torch(label, 2, 3, layers, False, seed=11).double()
    model = from_torch(mod.state_dict(), nonlinearity=KINDS[label].get("nonlinearity"))
    T, k = 6, 2
    xs = rng.standard_normal((T, 2))
    traj = gs.rollout(model, xs)
    Sk = tuple(s[k] for s in traj.states)

    def final(flat):
        s0 = gs.cells.unflatten_state(model, flat)
        return gs.rollout(model, xs[k:], s0).flat[-1]

    J = np.asarray(jax.jacrev(final)(gs.cells.flatten_state(Sk)))
    # torch orders the flat state as (all layers' h, then all layers' c); gradscope layer by layer
    names = list(model.blocks)
    order = sorted(range(len(names)), key=lambda i: (names[i].split(".")[-1] != "h", i))
    sl = gs.cells.block_slices(model)
    perm = np.concatenate([np.arange(sl[names[i]].start, sl[names[i]].stop) for i in order])
    want = _torch_jacobian(mod, xs, k, [np.asarray(Sk[i]) for i in order])
    np.testing.assert_allclose(J[np.ix_(perm, perm)], want, atol=1e-10)
