"""Every hostile or malformed input is one `GradscopeError` (CLI: one line, exit 2), refused before anything
large is allocated; nothing from a file ever runs; baselines are written through symbolic links."""

import io
import json
import os
import struct
import sys
import zipfile

import numpy as np
import pytest

from gradscope import checks
from gradscope._errors import GradscopeError
from gradscope.io.formats import read_arrays


def _safetensors(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _refused(path, *needles):
    with pytest.raises(GradscopeError) as exc:
        read_arrays(path)
    msg = str(exc.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


def test_safetensors_shape_whose_size_overflows_int64(tmp_path):
    # 2**40 * 2**40 * 4 bytes: int64 arithmetic would wrap; Python ints see 2**82 bytes in an empty file
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 0]}}).encode()
    msg = _refused(_safetensors(tmp_path / "o.safetensors", header), "'w'", "bytes")
    assert str(4 * 2**80) in msg


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_safetensors_header_nested_200000_deep(tmp_path, opener):
    closer = "]" if opener == "[" else "}"
    header = (opener * 200_000 + ("1" if opener != "[" else "") + closer * 200_000).encode()
    _refused(_safetensors(tmp_path / "d.safetensors", header), "nested more than")


def test_json_depth_ignores_brackets_inside_strings():
    from gradscope.io._files import json_depth

    assert json_depth('{"a\\"[[": "]]\\\\", "b": [[1]]}') == 3
    assert json_depth("[" * 100 + "]" * 100, limit=10) == 11  # stops early


def test_npz_member_whose_header_lies_about_its_shape(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.ones(4, np.float32))
    raw = buf.getvalue().replace(b"(4,)", b"(99999999999999999999,)")
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        z.writestr("a.npy", raw)
    _refused(tmp_path / "lie.npz", "declares shape", "a.npy")


def test_h5_decompression_bomb_is_refused_before_inflating(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as f:  # 3.6 GB declared, a few KB stored
        f.create_dataset("w", shape=(30000, 30000), dtype="f4", compression="gzip", chunks=(1000, 1000))
    assert path.stat().st_size < 100_000
    _refused(path, "decompression bomb", "'w'")


def test_pt_dict_nested_5000_deep(tmp_path):
    torch = pytest.importorskip("torch")
    d = cur = {}
    for _ in range(5000):
        cur["a"] = {}
        cur = cur["a"]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # torch.save pickles recursively
    try:
        torch.save(d, tmp_path / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    _refused(tmp_path / "deep.pt", "nested")


def test_pt_sparse_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"weight_ih_l0": torch.eye(4).to_sparse()}, tmp_path / "s.pt")
    _refused(tmp_path / "s.pt", "sparse", "weight_ih_l0", "to_dense")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pt_pickle_payload_never_runs_and_unsafe_advice_is_not_passed_on(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "EXECUTED"
    torch.save({"x": _Payload(marker)}, tmp_path / "evil.pt")
    msg = _refused(tmp_path / "evil.pt", "could not be loaded safely", "GLOBAL")
    assert not marker.exists()
    for advice in ("weights_only", "trusted source", "arbitrary code", "safe_globals"):
        assert advice not in msg, msg


def test_pt_zip_members_declaring_too_much(tmp_path):
    pytest.importorskip("torch")
    from gradscope.io._framework_files import read_torch_file

    with zipfile.ZipFile(tmp_path / "big.pt", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/data.pkl", b"\0" * 2_000_000)  # compresses to a few KB
    with pytest.raises(GradscopeError, match="declares 2000000 bytes"):
        read_torch_file(tmp_path / "big.pt", max_bytes=1_000_000)


# ------------------------------------------------------------------------------- baselines and configs


def _report(value=1.0):
    return {
        "schema": "gradscope.report/1",
        "analyses": [{"schema": "gradscope.analysis/1", "name": "net", "summary": {"log10_norm_max_lag": value}}],
    }


def test_baseline_update_writes_through_a_symlink(tmp_path):
    real = tmp_path / "store" / "baseline.json"
    real.parent.mkdir()
    checks.save_baseline(checks.make_baseline(_report(1.0)), real)
    link = tmp_path / "baseline.json"
    link.symlink_to(real)
    checks.save_baseline(checks.make_baseline(_report(2.0)), link, overwrite=True)
    assert link.is_symlink() and os.readlink(link) == str(real)  # the link is still a link…
    assert json.loads(real.read_text())["metrics"]["net/log10_norm_max_lag"]["value"] == 2.0  # …to the new file


def _baseline_file(tmp_path, **entry):
    data = checks.make_baseline(_report(1.0))
    data["metrics"]["net/log10_norm_max_lag"].update(entry)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    return path


def test_baseline_with_min_above_max_is_refused(tmp_path):
    with pytest.raises(checks.CheckInputError, match="min=2 is greater than max=1"):
        checks.load_baseline(_baseline_file(tmp_path, min=2.0, max=1.0))


def test_baseline_nan_value_is_an_input_error_exit_2(tmp_path):
    path = _baseline_file(tmp_path)
    path.write_text(path.read_text().replace('"value": 1.0', '"value": NaN'))
    with pytest.raises(checks.CheckInputError, match="NaN is not a JSON number") as exc:
        checks.load_baseline(path)
    assert exc.value.exit_code == 2


def test_deeply_nested_report_and_toml_are_input_errors(tmp_path):
    (tmp_path / "r.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(checks.CheckInputError, match="nested too deeply"):
        checks.load_report(tmp_path / "r.json")
    (tmp_path / "c.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(checks.CheckInputError):
        checks.load_config(tmp_path / "c.toml")
    (tmp_path / "p.toml").write_text('[tool]\ngradscope = "x"\n')
    with pytest.raises(checks.CheckInputError, match=r"tool.gradscope.check"):
        checks.load_config(tmp_path / "p.toml")


# ----------------------------------------------------------------------------------- odd inputs, the API


def test_nan_inf_empty_inputs_and_mixed_dtypes_are_gradscope_errors():
    """Documented choice: nothing is promoted or imputed silently; each case is one `GradscopeError`."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    import gradscope as gs
    from gradscope import engine

    cell = gs.cells.make("lstm", 2, 4, key=jax.random.key(0))
    xs = np.ones((2, 5, 2), np.float32)
    bad = {
        "nan": np.where(np.arange(20).reshape(2, 5, 2) == 3, np.nan, xs),
        "inf": xs * np.inf,
        "empty batch": np.ones((0, 5, 2), np.float32),
        "no steps": np.ones((2, 0, 2), np.float32),
    }
    for what, x in bad.items():
        with pytest.raises(GradscopeError):
            engine.lag_profile(cell, x)
    was = getattr(jax.config, "jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        mixed = dataclasses.replace(cell, bias_ih=cell.bias_ih.astype(jnp.float64))
        with pytest.raises(GradscopeError, match="mixes floating-point dtypes"):
            engine.lag_profile(mixed, xs)
    finally:
        jax.config.update("jax_enable_x64", was)
