"""Property-based tests (Hypothesis): random and mutated bytes given to every parser of untrusted input — the
weight-file readers (safetensors, .npz, .pt, Flax msgpack), the input-file readers of ``--input FILE``, ``--cells``
specs, baselines and check configs — give a valid result or one `GradscopeError`, never another exception.
Each property is small (≤ 60 examples, no deadline) so the whole file stays a few seconds on 2 cores.
(HDF5 is left out: a corrupt file can crash the HDF5 C library itself, which no Python check can catch.)"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gradscope._errors import GradscopeError  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
FEWER = settings(FAST, max_examples=30)  # the slower parsers (torch's unpickler, nested JSON generation)


def _mutate(data: bytes, edits) -> bytes:
    """``data`` with the bytes at the given positions (modulo its length) overwritten."""
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


mutations = st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=8)
cuts = st.one_of(st.none(), st.integers(0, 4096))


def _variant(valid: bytes, edits, cut) -> bytes:
    data = _mutate(valid, edits)
    return data if cut is None else data[: cut % (len(data) + 1)]


def _accepts_or_refuses(read, path):
    """A valid load or a `GradscopeError`; any other exception fails the property."""
    try:
        read(path)
    except GradscopeError:
        pass


# ------------------------------------------------------------------------------------------ weight files


def _safetensors_bytes() -> bytes:
    import tempfile

    from gradscope.io._files import write_safetensors

    tensors = {"weight_ih_l0": np.ones((4, 2), np.float32), "bias": np.arange(3, dtype=np.float64)}
    with tempfile.TemporaryDirectory() as d:
        write_safetensors(f"{d}/v.safetensors", tensors, {"framework": "torch"})
        return open(f"{d}/v.safetensors", "rb").read()


def _mutated_file(tmp_path_factory, reader, valid: bytes, suffix: str, edits, cut) -> None:
    """A valid file of ``suffix`` with ``edits`` applied and cut at ``cut``: ``reader`` accepts or refuses it."""
    path = tmp_path_factory.mktemp("mutated") / f"m{suffix}"
    path.write_bytes(_variant(valid, edits, cut))
    _accepts_or_refuses(reader, path)


@FAST
@given(edits=mutations, cut=cuts)
def test_mutated_safetensors(tmp_path_factory, edits, cut):
    from gradscope.io._files import read_safetensors

    _mutated_file(tmp_path_factory, read_safetensors, _safetensors_bytes(), ".safetensors", edits, cut)


@FEWER
@given(
    header=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)),
        lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)),
        max_leaves=20,
    ),
    data=st.binary(max_size=64),
)
def test_random_safetensors_headers(tmp_path_factory, header, data):
    from gradscope.io._files import read_safetensors

    raw = json.dumps(header).encode()
    path = tmp_path_factory.mktemp("st") / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    _accepts_or_refuses(read_safetensors, path)


@FAST
@given(data=st.binary(max_size=256))
def test_random_bytes_in_every_weight_format(tmp_path_factory, data):
    from gradscope.io.formats import read_arrays

    folder = tmp_path_factory.mktemp("rb")
    for suffix in (".safetensors", ".npz", ".msgpack"):
        path = folder / f"r{suffix}"
        path.write_bytes(data)
        _accepts_or_refuses(read_arrays, path)


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.ones((3, 2), np.float32), __metadata__=np.array('{"framework": "torch"}'))
    return buf.getvalue()


@FAST
@given(edits=mutations, cut=cuts)
def test_mutated_npz(tmp_path_factory, edits, cut):
    from gradscope.io._files import read_npz

    _mutated_file(tmp_path_factory, read_npz, _npz_bytes(), ".npz", edits, cut)


@FEWER
@given(edits=mutations, cut=cuts)
def test_mutated_pt(tmp_path_factory, edits, cut):
    torch = pytest.importorskip("torch")
    from gradscope.io._framework_files import read_torch_file

    buf = io.BytesIO()
    torch.save({"weight_ih_l0": torch.ones(4, 2), "meta": {"k": torch.zeros(2)}}, buf)
    _mutated_file(tmp_path_factory, read_torch_file, buf.getvalue(), ".pt", edits, cut)


@FAST
@given(edits=mutations, cut=cuts)
def test_mutated_msgpack(tmp_path_factory, edits, cut):
    serialization = pytest.importorskip("flax.serialization")
    from gradscope.io._framework_files import read_msgpack

    raw = serialization.to_bytes({"params": {"kernel": np.ones((2, 3), np.float32), "bias": np.zeros(3)}})
    _mutated_file(tmp_path_factory, read_msgpack, raw, ".msgpack", edits, cut)


# ------------------------------------------------------------------------------------ --input FILE readers


@FAST
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".npy", ".npz", ".csv", ".safetensors"]))
def test_random_input_files(tmp_path_factory, data, suffix):
    input_files = pytest.importorskip("gradscope.experiments.input_files")
    path = tmp_path_factory.mktemp("in") / f"x{suffix}"
    path.write_bytes(data)
    _accepts_or_refuses(input_files.read_input_file, str(path))


@FAST
@given(text=st.text(alphabet="0123456789.,-e+naifNI \n\t;", max_size=120))
def test_random_csv_inputs(tmp_path_factory, text):
    input_files = pytest.importorskip("gradscope.experiments.input_files")
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    path.write_text(text)
    _accepts_or_refuses(input_files.read_input_file, str(path))


# ---------------------------------------------------------------------------------------- --cells specs


@FAST
@given(text=st.text(alphabet="abcdefghilmnorstu-_:=,.0123456789 ", max_size=40))
def test_random_cell_specs(text):
    from gradscope.cli._options import parse_cell_list

    try:
        specs = parse_cell_list(text)
    except GradscopeError:
        return
    assert specs and all(s.label for s in specs)


# --------------------------------------------------------------------------------- baselines and configs


def _baseline_text() -> str:
    from gradscope import checks

    report = {
        "schema": "gradscope.report/1",
        "analyses": [{"schema": "gradscope.analysis/1", "name": "net", "summary": {"horizon": 12.0}}],
    }
    return json.dumps(checks.make_baseline(report))


@FAST
@given(edits=st.lists(st.tuples(st.integers(0, 2**31), st.sampled_from(list(b'{}[]",:0-9eE.ntfalsNI '))), max_size=6))
def test_mutated_baselines(tmp_path_factory, edits):
    from gradscope import checks

    path = tmp_path_factory.mktemp("b") / "b.json"
    path.write_bytes(_mutate(_baseline_text().encode(), edits))
    _accepts_or_refuses(checks.load_baseline, path)


@FAST
@given(text=st.text(alphabet="[]{}=.\"'#\nabcdefgikmnorstu_0123456789-+ ", max_size=120))
def test_random_check_configs(tmp_path_factory, text):
    from gradscope import checks

    path = tmp_path_factory.mktemp("c") / "c.toml"
    path.write_text(text)
    _accepts_or_refuses(checks.load_config, path)
