"""Safe file reading: no pickle is ever executed, and every malformed input raises a GradscopeError
(`ImportFormatError`) naming the tensor — never a crash, never a partial load.

Truth: the reference `safetensors` package (reader and writer), numpy's own npz writer, torch.save,
and marker files that a live pickle payload would create.
"""

from __future__ import annotations

import io
import json
import pickle
import struct

import numpy as np
import pytest

from gradscope import GradscopeError
from gradscope.io import from_torch, to_torch_state_dict
from gradscope.io.formats import ImportFormatError, read_npz, read_safetensors, write_safetensors


def _lstm_state_dict(seed=0, layers=2, I=3, H=4):
    """Float32 arrays with PyTorch nn.LSTM names (torch.nn.LSTM's documented layout), made without torch."""
    r = np.random.default_rng(seed)
    sd = {}
    for l in range(layers):
        m = I if l == 0 else H
        sd[f"weight_ih_l{l}"] = r.standard_normal((4 * H, m)).astype(np.float32)
        sd[f"weight_hh_l{l}"] = r.standard_normal((4 * H, H)).astype(np.float32)
        sd[f"bias_ih_l{l}"] = r.standard_normal(4 * H).astype(np.float32)
        sd[f"bias_hh_l{l}"] = r.standard_normal(4 * H).astype(np.float32)
    return sd


SD = _lstm_state_dict()


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_payload_is_live(tmp_path):
    """The payload really executes when unpickled — so the markers below would catch a leak."""
    marker = tmp_path / "live"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


# ------------------------------------------------------------------------------- safetensors
def test_reader_agrees_with_reference_writer(tmp_path):
    from safetensors.numpy import save_file

    arrs = {
        "a": np.arange(6, dtype=np.float64).reshape(2, 3),
        "b": np.ones((4,), np.float16),
        "c": np.zeros((0, 3), np.float32),
        "d": np.array(3.5, np.float32),
    }
    save_file(arrs, str(tmp_path / "x.safetensors"), metadata={"kind": "lstm"})
    got, meta = read_safetensors(tmp_path / "x.safetensors")
    assert meta == {"kind": "lstm"}
    for k, v in arrs.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)


def test_bf16_is_widened(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    t = torch.tensor([1.5, -2.25, 3.0e5], dtype=torch.bfloat16)
    save_file({"w": t}, str(tmp_path / "b.safetensors"))
    got, _ = read_safetensors(tmp_path / "b.safetensors")
    np.testing.assert_array_equal(got["w"], t.float().numpy())


def test_writer_agrees_with_reference_reader(tmp_path):
    from safetensors.numpy import load_file

    write_safetensors(tmp_path / "y.safetensors", SD, {"kind": "lstm"})
    ref = load_file(str(tmp_path / "y.safetensors"))
    assert set(ref) == set(SD) and all(np.array_equal(ref[k], SD[k]) for k in SD)


@pytest.fixture(scope="module")
def st_bytes(tmp_path_factory):
    p = tmp_path_factory.mktemp("st") / "m.safetensors"
    write_safetensors(p, SD, {"kind": "lstm", "nonlinearity": "tanh"})
    return p.read_bytes()


def _same_weights(model):
    got = to_torch_state_dict(model)
    return set(got) == set(SD) and all(np.array_equal(got[k], SD[k]) for k in SD)


def test_truncated_safetensors(tmp_path, st_bytes):
    p = tmp_path / "t.safetensors"
    for n in sorted({0, 3, 8, 9, 40, len(st_bytes) // 2, len(st_bytes) - 1}):
        p.write_bytes(st_bytes[:n])
        with pytest.raises(ImportFormatError):
            from_torch(p)


def test_bit_flipped_header(tmp_path, st_bytes):
    """Flip single bits in the length field and the JSON header: a clean error, or (if the flip
    touched only something irrelevant) the exact same weights — never anything in between."""
    (n,) = struct.unpack("<Q", st_bytes[:8])
    rng = np.random.default_rng(0)
    bits = np.concatenate([np.arange(64), rng.choice(np.arange(64, 8 * (8 + n)), 250, replace=False)])
    p = tmp_path / "f.safetensors"
    errors = 0
    for bit in bits:
        b = bytearray(st_bytes)
        b[bit // 8] ^= 1 << (bit % 8)
        p.write_bytes(bytes(b))
        try:
            model = from_torch(p)
        except GradscopeError:
            errors += 1
            continue
        assert _same_weights(model), f"bit {bit} changed weights silently"
    assert errors > 0.8 * len(bits)


@pytest.mark.parametrize(
    "case", ["huge-length", "offsets-out-of-range", "overlap", "bad-dtype", "int-dtype", "not-json", "bad-shape-type"]
)
def test_crafted_safetensors_headers(tmp_path, case):
    data = np.ones(16 * 4, np.float32).tobytes()
    hdr = {"weight_ih": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}
    if case == "offsets-out-of-range":
        hdr["weight_ih"]["data_offsets"] = [0, 6400]
    if case == "overlap":
        hdr["weight_hh"] = {"dtype": "F32", "shape": [2, 4], "data_offsets": [32, 64]}
        hdr["weight_ih"] = {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32 + 4]}
    if case == "bad-dtype":
        hdr["weight_ih"]["dtype"] = "F128"
    if case == "int-dtype":
        hdr["weight_ih"]["dtype"] = "I32"
    if case == "bad-shape-type":
        hdr["weight_ih"]["shape"] = ["4", 4]
    raw = b"{not json" if case == "not-json" else json.dumps(hdr).encode()
    length = 2**62 if case == "huge-length" else len(raw)
    p = tmp_path / "c.safetensors"
    p.write_bytes(struct.pack("<Q", length) + raw + data)
    with pytest.raises(ImportFormatError) as e:
        from_torch(p)
    if case == "int-dtype":
        assert "'weight_ih'" in str(e.value) and "int32" in str(e.value)


# --------------------------------------------------------------------------------------- npz
def test_truncated_and_flipped_npz(tmp_path):
    p = tmp_path / "m.npz"
    np.savez(p, **SD)
    good = p.read_bytes()
    for n in (0, 10, len(good) // 3, len(good) - 5):
        p.write_bytes(good[:n])
        with pytest.raises(ImportFormatError):
            from_torch(p)
    rng = np.random.default_rng(1)
    for bit in rng.choice(8 * len(good), 120, replace=False):
        b = bytearray(good)
        b[bit // 8] ^= 1 << (bit % 8)
        p.write_bytes(bytes(b))
        try:
            model = from_torch(p)
        except GradscopeError:
            continue
        assert _same_weights(model), f"bit {bit} changed weights silently"


def test_pickle_bomb_in_npz(tmp_path):
    marker = tmp_path / "pwned-npz"
    arrs = dict(SD)
    arrs["weight_hh_l1"] = np.array([Payload(marker)], dtype=object)
    p = tmp_path / "bomb.npz"
    np.savez(p, **arrs)  # numpy pickles the object array on write
    with pytest.raises(ImportFormatError, match="pickle"):
        from_torch(p)
    with pytest.raises(ImportFormatError):
        read_npz(p)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_bomb_in_pt(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned-pt"
    sd = {k: torch.from_numpy(v) for k, v in SD.items()}
    sd["extra"] = Payload(marker)
    p = tmp_path / "bomb.pt"
    torch.save(sd, p)
    with pytest.raises(ImportFormatError, match="could not be loaded safely") as exc:
        from_torch(p)
    assert "weights_only=False" not in str(exc.value)  # torch's advice to load unsafely is not passed on
    assert not marker.exists()
    # a plain pickle file posing as .pt
    p2 = tmp_path / "bomb2.pth"
    p2.write_bytes(pickle.dumps({"weight_ih_l0": Payload(marker)}))
    with pytest.raises(ImportFormatError):
        from_torch(p2)
    assert not marker.exists()


def test_pt_refused_on_old_torch(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    p = tmp_path / "ok.pt"
    torch.save({k: torch.from_numpy(v) for k, v in SD.items()}, p)
    assert _same_weights(from_torch(p))
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(ImportFormatError, match="2.10"):
        from_torch(p)


def test_truncated_pt(tmp_path):
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({k: torch.from_numpy(v) for k, v in SD.items()}, buf)
    p = tmp_path / "t.pt"
    for n in (0, 20, len(buf.getvalue()) // 2):
        p.write_bytes(buf.getvalue()[:n])
        with pytest.raises(ImportFormatError):
            from_torch(p)


# ------------------------------------------------------------------------------- Flax msgpack
def test_flax_msgpack_decoded_as_flax_decodes_it_without_jax(tmp_path):
    """Flax msgpack (arrays, bfloat16, NumPy scalars, complex numbers, chunked arrays) reads back as
    ``flax.serialization.msgpack_restore`` reads it, and a fresh interpreter reads a file without importing JAX."""
    import subprocess
    import sys

    import jax.numpy as jnp

    serialization = pytest.importorskip("flax.serialization")
    from gradscope.io.formats import msgpack_tree

    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 3}, "chunks": {"0": np.arange(4.0)}}
    chunked["chunks"]["1"] = np.arange(2.0)
    tree = {"params": {"kernel": SD["weight_ih_l0"], "bf16": np.asarray(jnp.ones(3, jnp.bfloat16)), "n": np.int8(3)}}
    tree |= {"c": 1 + 2j, "chunked": chunked, "list": [1, 2.5, "x"]}
    raw = serialization.msgpack_serialize(tree)
    want, got = serialization.msgpack_restore(raw), msgpack_tree(raw)
    assert want.keys() == got.keys() and want["c"] == got["c"] and want["list"] == got["list"]
    np.testing.assert_array_equal(got["chunked"], want["chunked"])
    for k, v in want["params"].items():
        assert np.asarray(got["params"][k]).dtype == np.asarray(v).dtype
        np.testing.assert_array_equal(np.asarray(got["params"][k], np.float64), np.asarray(v, np.float64))
    path = tmp_path / "lstm.msgpack"
    path.write_bytes(serialization.to_bytes({"params": {"cell": {"hi": {"kernel": SD["weight_hh_l0"][:4].T}}}}))
    code = "import sys; from gradscope.io import read_arrays; read_arrays(sys.argv[1]); print('jax' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.split() == ["False"], res.stderr


# ----------------------------------------------------------------------- content validation
def _variant(**changes):
    sd = dict(SD)
    for k, v in changes.items():
        if v is None:
            sd.pop(k)
        else:
            sd[k] = v
    return sd


@pytest.mark.parametrize(
    "sd,match",
    [
        (_variant(bias_hh_l1=None), r"'bias_hh_l1'.*\(16,\)"),
        (_variant(weight_hh_l1=None), r"weight_hh_l1.*\(16, 4\)"),
        (_variant(weight_hh_l1=SD["weight_hh_l1"].T.copy()), r"'weight_hh_l1' has shape \(4, 16\), expected \(16, 4\)"),
        (_variant(weight_ih_l1=SD["weight_ih_l1"][:, :3]), r"'weight_ih_l1' has shape \(16, 3\), expected \(16, 4\)"),
        (_variant(bias_ih_l0=SD["bias_ih_l0"].astype(np.int32)), r"'bias_ih_l0' has dtype int32"),
        (_variant(bias_ih_l0=SD["bias_ih_l0"].astype(np.complex64)), r"'bias_ih_l0' has dtype complex64"),
        (_variant(weight_foo_l0=np.zeros(3, np.float32)), r"unexpected tensor.*weight_foo_l0"),
        (_variant(weight_ih_l2=np.zeros((16, 4), np.float32)), r"weight_hh_l2"),
        (_variant(weight_ih_l0_reverse=np.zeros((16, 3), np.float32)), r"weight_hh_l0_reverse"),
        (_variant(weight_hh_l0=np.zeros((8, 4), np.float32), weight_hh_l1=np.zeros((8, 4), np.float32)), r"2 gate"),
        ({"kernel": np.zeros((3, 16), np.float32)}, r"no PyTorch RNN weights"),
    ],
)
def test_bad_state_dicts(sd, match, tmp_path):
    with pytest.raises(ImportFormatError, match=match):
        from_torch(sd)
    # the same through a file
    p = tmp_path / "bad.safetensors"
    if all(v.dtype.kind == "f" for v in sd.values()):
        write_safetensors(p, sd)
        with pytest.raises(ImportFormatError, match=match):
            from_torch(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad, tmp_path):
    w = SD["weight_hh_l1"].copy()
    w[2, 1] = bad
    with pytest.raises(ImportFormatError, match=r"'weight_hh_l1' has 1 NaN/inf"):
        from_torch(_variant(weight_hh_l1=w))
    np.savez(tmp_path / "n.npz", **_variant(weight_hh_l1=w))
    with pytest.raises(ImportFormatError, match="NaN/inf"):
        from_torch(tmp_path / "n.npz")


def test_kind_and_options_checked(tmp_path):
    with pytest.raises(ImportFormatError, match="kind='gru'"):
        from_torch(SD, kind="gru")
    r = np.random.default_rng(0)
    rnn = {"weight_ih_l0": r.standard_normal((4, 3)), "weight_hh_l0": r.standard_normal((4, 4))}
    with pytest.raises(ImportFormatError, match="nonlinearity='sigmoid'"):
        from_torch(rnn, nonlinearity="sigmoid")
    write_safetensors(tmp_path / "m.safetensors", SD, {"kind": "gru"})
    with pytest.raises(ImportFormatError, match="metadata says kind='gru'"):
        from_torch(tmp_path / "m.safetensors")


def test_bad_paths(tmp_path):
    with pytest.raises(ImportFormatError, match="cannot read"):
        from_torch(tmp_path / "missing.safetensors")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ImportFormatError, match="unknown weight file type"):
        from_torch(tmp_path / "w.onnx")
    with pytest.raises(ImportFormatError, match="expected a mapping"):
        from_torch(42)
    write_safetensors(tmp_path / "big.safetensors", SD)
    with pytest.raises(ImportFormatError, match="max_bytes"):
        from_torch(tmp_path / "big.safetensors", max_bytes=100)
