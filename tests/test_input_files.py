"""Real inputs: ``--input FILE`` (.npy, .npz:name, .csv, .safetensors) on analyse/compare/sweep, torch tensors in
every entry point, and `gradscope.experiments.inputs.from_batches`.

The reference is always `gs.analyse` of the same model on the arrays as the test wrote them (not as
gradscope read them back), so a reader that reorders, transposes, truncates or re-types data fails. The
model is a checkpoint saved with `gradscope.io.save_safetensors` and given to the CLI with ``--weights``, so
both sides analyse the very same weights. Bad files must give one line on stderr, exit code 2 and no
traceback, and an object array must never be unpickled.
"""

import csv
import hashlib
import json

import numpy as np
import pytest

import gradscope as gs
from gradscope._errors import GradscopeError
from gradscope._rollout import rollout
from gradscope.analysis import analyse
from gradscope.engine import lag_profile, lyapunov_spectrum, singular_values
from gradscope.experiments import input_files, inputs
from gradscope.io import save_safetensors
from gradscope.io.formats import write_safetensors
from tests._cli import assert_error, run

B, T, M, H = 2, 6, 2, 3


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A GRU checkpoint (input size 2, hidden 3) and the model the CLI will load from it."""
    import jax

    path = tmp_path_factory.mktemp("ckpt") / "gru.safetensors"
    save_safetensors(gs.cells.make("gru", M, H, key=jax.random.key(3)), path)
    return path, gs.io.load_model(str(path), dtype="float32")


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(size=(B, T, M)).astype(np.float32)


def cli_analysis(tmp_path, ckpt_path, spec, *extra):
    out = tmp_path / "out"
    res = run("analyse", "--weights", ckpt_path, "--input", spec, "--out", out, "--json", "-q", *extra)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report == json.loads((out / "report.json").read_text())
    return report


def assert_same_analysis(record: dict, ref, batch: int):
    """The CLI's record equals `gs.analyse` of the arrays as written (lag profile, summary numbers)."""
    r = ref.to_dict()
    assert record["length"] == r["length"] and record["batch"] == batch
    np.testing.assert_allclose(record["lag_profile"]["log10_spectral"], r["lag_profile"]["log10_spectral"], rtol=1e-5)
    for key in ("log10_norm_max_lag", "decay_per_step", "lyapunov_max"):
        np.testing.assert_allclose(record["summary"][key], r["summary"][key], rtol=1e-5, atol=1e-7)
    assert record["summary"]["horizon"] == r["summary"]["horizon"]
    assert record["summary"]["verdict"] == r["summary"]["verdict"]


# ------------------------------------------------------------------------------- CLI equals Python


def _npy(tmp_path, x):
    np.save(tmp_path / "x.npy", x)
    return str(tmp_path / "x.npy"), x


def _npz(tmp_path, x):
    np.savez(tmp_path / "x.npz", other=np.zeros((3, 3, 3), np.float32), seqs=x)
    return f"{tmp_path / 'x.npz'}:seqs", x


def _safetensors(tmp_path, x):
    write_safetensors(tmp_path / "x.safetensors", {"inputs": x})  # one tensor: the name is optional
    return str(tmp_path / "x.safetensors"), x


def _csv_one(tmp_path, x):
    with open(tmp_path / "x.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b"])
        w.writerows(x[0].tolist())
    return str(tmp_path / "x.csv"), x[0]  # one sequence (T, m)


def _csv_ids(tmp_path, x):
    # the id column in the middle, sequences interleaved: rows of a sequence keep their file order
    rows = [
        (repr(float(v0)), sid, repr(float(v1)))
        for t in range(T)
        for sid, (v0, v1) in (("s1", x[0, t]), ("s2", x[1, t]))
    ]
    with open(tmp_path / "x.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f0", "Sequence", "f1"])
        w.writerows(rows)
    return str(tmp_path / "x.csv"), x.astype(np.float64)


@pytest.mark.parametrize(
    "make", [_npy, _npz, _safetensors, pytest.param(_csv_one, marks=pytest.mark.slow), _csv_ids]
)  # one CSV sequence (T, m) compiles programs of its own: slow tier
def test_analyse_input_file_equals_python(tmp_path, ckpt, data, make):
    spec, x = make(tmp_path, data)
    report = cli_analysis(tmp_path, ckpt[0], spec)
    ref = analyse(ckpt[1], x)
    assert_same_analysis(report["analyses"][0], ref, batch=x.shape[0] if x.ndim == 3 else 1)
    src = report["config"]["input_file"]
    path = spec.rsplit(":", 1)[0] if spec.endswith(":seqs") else spec
    assert src["file"] == path and list(src["shape"]) == list(x.shape)
    assert src["array"] == {"x.npz": "seqs", "x.safetensors": "inputs"}.get(path.rsplit("/", 1)[-1])
    assert src["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert report["config"]["input"] == spec and report["config"]["length"] == T


@pytest.mark.slow
def test_compare_and_sweep_take_a_file(tmp_path, data):
    spec, _ = _npy(tmp_path, data)
    res = run("compare", "--cells", "rnn-tanh", "--hidden", 3, "--input", spec, "--out", tmp_path / "c", "--json", "-q")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    a = rep["analyses"][0]
    assert (a["length"], a["batch"]) == (T, B) and rep["config"]["input_file"]["shape"] == [B, T, M]
    # sweep: typed lengths take the first steps of every sequence (T' ≤ T)
    res = run(
        "sweep", "--cells", "rnn-tanh", "--gains", 1, "--hidden", 3, "--lengths", "3,6", "--input", spec,
        "--out", tmp_path / "s", "--json", "-q",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert [a["length"] for a in rep["analyses"]] == [3, 6] and rep["config"]["input_file"]["file"] == spec
    # the T=3 analysis is the T=6 model on the first 3 steps: its lag profile is the same model's on xs[:, :3]
    from gradscope.experiments import sweep

    cfg = sweep.Config(**{k: v for k, v in rep["config"]["grid"][0].items()})
    ref = analyse(sweep.build_model(cfg, sweep.config_keys(0)[0]), data[:, :3])
    assert_same_analysis(rep["analyses"][0], ref, batch=B)


# --------------------------------------------------------------------------------- bad input files


def _bad(tmp_path, kind):
    p = tmp_path
    if kind == "rank":
        np.save(p / "r.npy", np.zeros((2, 3, 4, 2), np.float32))
        return str(p / "r.npy"), ("shape (2, 3, 4, 2)", "rank 4", "(B, T, m)")
    if kind == "nan":
        x = np.zeros((B, T, M), np.float32)
        x[1, 4, 0] = np.nan
        np.save(p / "n.npy", x)
        return str(p / "n.npy"), ("batch=1, t=4, feature=0", "nan")
    if kind == "inf-csv":
        (p / "i.csv").write_text("a,b\n1,2\n3,inf\n")
        return str(p / "i.csv"), ("line 3", "'b'", "inf")
    if kind == "input-size":
        np.save(p / "m.npy", np.zeros((B, T, 3), np.float32))
        return str(p / "m.npy"), ("size 3", "takes 2", "2 features per step")
    if kind == "missing-name":
        np.savez(p / "z.npz", xs=np.zeros((B, T, M), np.float32), ys=np.zeros(3))
        return f"{p / 'z.npz'}:inputs", ("no array 'inputs'", "xs, ys")
    if kind == "ambiguous-name":
        np.savez(p / "z.npz", xs=np.zeros((B, T, M), np.float32), ys=np.zeros(3))
        return str(p / "z.npz"), ("holds 2 arrays (xs, ys)", ":xs")
    if kind == "missing-tensor":
        write_safetensors(p / "t.safetensors", {"a": np.zeros((T, M), np.float32), "b": np.zeros((T, M))})
        return f"{p / 't.safetensors'}:c", ("no tensor 'c'", "a, b")
    if kind == "object":
        marker = p / "UNPICKLED"
        np.save(p / "o.npy", np.array([_Evil(str(marker))], dtype=object), allow_pickle=True)
        return str(p / "o.npy"), ("object (pickled) array", "never unpickles")
    if kind == "object-npz":
        np.savez(p / "o.npz", x=np.array([_Evil(str(p / "UNPICKLED"))], dtype=object))
        return str(p / "o.npz"), ("pickled",)
    if kind == "ragged-rows":
        (p / "r.csv").write_text("a,b\n1,2\n3\n4,5\n")
        return str(p / "r.csv"), ("line 3 has 1 fields", "line 1 has 2", "ragged rows")
    if kind == "ragged-seqs":
        (p / "q.csv").write_text("id,a,b\n0,1,2\n0,3,4\n1,5,6\n")
        return str(p / "q.csv"), ("0: 2, 1: 1", "ragged sequences")
    if kind == "int":
        np.save(p / "i.npy", np.ones((T, M), np.int64))
        return str(p / "i.npy"), ("dtype int64", "floating-point", "astype(np.float32)")
    if kind == "bool-safetensors":
        hdr = json.dumps({"x": {"dtype": "BOOL", "shape": [T, M], "data_offsets": [0, T * M]}}).encode()
        (p / "b.safetensors").write_bytes(len(hdr).to_bytes(8, "little") + hdr + bytes(T * M))
        return str(p / "b.safetensors"), ("dtype bool", "floating-point")
    if kind == "empty":
        np.save(p / "e.npy", np.zeros((0, M), np.float32))
        return str(p / "e.npy"), ("empty axis",)
    if kind == "truncated":
        np.save(p / "t.npy", np.zeros((B, T, M), np.float32))
        (p / "t.npy").write_bytes((p / "t.npy").read_bytes()[:100])
        return str(p / "t.npy"), ("not a readable .npy",)
    if kind == "overflow":
        x = np.ones((B, T, M))
        x[0, 1, 1] = 1e300  # finite in float64, inf in the model's float32
        np.save(p / "big.npy", x)
        return str(p / "big.npy"), ("1e+300", "beyond the range of float32", "--float64")
    if kind == "no-file":
        return str(p / "nothere.npy"), ("no such file",)
    if kind == "suffix":
        (p / "x.txt").write_text("1,2\n")
        return str(p / "x.txt"), ("unknown file type '.txt'", ".npy, .npz, .csv, .safetensors")
    raise AssertionError(kind)


class _Evil:
    """Unpickling this creates the marker file: loading an input file must never do it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


BAD = [
    "rank", "nan", "inf-csv", "input-size", "missing-name", "ambiguous-name", "missing-tensor", "object",
    "object-npz", "ragged-rows", "ragged-seqs", "int", "bool-safetensors", "empty", "truncated", "overflow", "no-file",
    "suffix",
]  # fmt: skip


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_file_is_one_line_exit_2(tmp_path, ckpt, kind):
    spec, needles = _bad(tmp_path, kind)
    res = run("analyse", "--weights", ckpt[0], "--input", spec, "--out", tmp_path / "out", "-q")
    assert_error(res, *needles)
    assert not (tmp_path / "UNPICKLED").exists()
    assert not (tmp_path / "out").exists()


def test_file_sizes_win_and_typed_ones_must_agree(tmp_path, data):
    spec, _ = _npy(tmp_path, data)
    for flag, value, needle in (
        ("--length", 5, "6 steps"),
        ("--batch", 3, "2 sequences"),
        ("--input-size", 3, "2 features"),
    ):
        res = run("analyse", "--cell", "gru", "--input", spec, flag, value, "--out", tmp_path / "o", "-q")
        assert_error(res, f"{flag}={value}", needle, f"leave {flag} out")
    res = run("sweep", "--cells", "gru", "--input", spec, "--lengths", "4,7", "--out", tmp_path / "s", "-q")
    assert_error(res, "--lengths=4,7", "at most 6")
    res = run("analyse", "--cell", "gru", "--input", "uniformm", "--out", tmp_path / "o", "-q")
    assert_error(res, "did you mean uniform", ".npy")


# ------------------------------------------------------------------------------------ the reader


def test_split_spec_and_file_detection(tmp_path):
    assert input_files.split_spec("d/x.npz:seqs") == ("d/x.npz", "seqs")
    assert input_files.split_spec("x.SAFETENSORS:a.b") == ("x.SAFETENSORS", "a.b")
    assert input_files.split_spec(r"C:\data\x.npy") == (r"C:\data\x.npy", None)
    assert input_files.split_spec("x.npy") == ("x.npy", None)
    assert input_files.is_file_spec("missing.csv") and not input_files.is_file_spec("uniform")
    assert not inputs.is_file("noise")


def test_reader_record_and_read_only(tmp_path, data):
    np.savez(tmp_path / "x.npz", seqs=data)
    f = input_files.read_input_file(f"{tmp_path / 'x.npz'}:seqs")
    np.testing.assert_array_equal(f.array, data)
    assert f.array.flags.writeable is False and f.shape == (B, T, M)
    assert f.source == {
        "file": str(tmp_path / "x.npz"),
        "array": "seqs",
        "shape": [B, T, M],
        "dtype": "float32",
        "sha256": hashlib.sha256((tmp_path / "x.npz").read_bytes()).hexdigest(),
    }
    np.testing.assert_array_equal(inputs.from_file(f"{tmp_path / 'x.npz'}:seqs"), data)


def test_csv_without_header_is_one_sequence(tmp_path):
    (tmp_path / "x.csv").write_text("1,2\n3.5,-4\n\n5e-1,6\n")  # blank lines are skipped
    f = input_files.read_input_file(str(tmp_path / "x.csv"))
    np.testing.assert_array_equal(f.array, [[[1, 2], [3.5, -4], [0.5, 6]]])


# --------------------------------------------------------------------- torch tensors, from_batches


def test_torch_tensors_in_every_entry_point(ckpt, data):
    torch = pytest.importorskip("torch")
    model = ckpt[1]
    xt = torch.tensor(data, requires_grad=True)  # numpy() on it would raise: the helper detaches
    ref = analyse(model, data)
    assert_same_analysis(analyse(model, xt).to_dict(), ref, batch=B)
    np.testing.assert_array_equal(lag_profile(model, xt).log10_spectral, lag_profile(model, data).log10_spectral)
    np.testing.assert_array_equal(rollout(model, xt[0]).flat, rollout(model, data[0]).flat)
    np.testing.assert_array_equal(singular_values(model, xt).log10_sv, singular_values(model, data).log10_sv)
    np.testing.assert_array_equal(
        lyapunov_spectrum(model, xt, k=2).exponents, lyapunov_spectrum(model, data, k=2).exponents
    )
    s0 = torch.ones(B, H)  # a torch initial state too
    np.testing.assert_array_equal(rollout(model, xt, s0).flat, rollout(model, data, np.ones((B, H))).flat)
    # bfloat16 is widened; the user's tensor keeps its graph and gets no gradient
    rollout(model, xt.to(torch.bfloat16))
    assert xt.requires_grad and xt.grad is None


def test_from_batches_of_a_dataloader(ckpt, data):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    more = np.random.default_rng(1).normal(size=(3, T, M)).astype(np.float32)
    xs = np.concatenate([data, more])  # 5 sequences
    loader = DataLoader(TensorDataset(torch.from_numpy(xs), torch.zeros(5)), batch_size=2, shuffle=False)
    stacked = inputs.from_batches(loader)  # (x, y) pairs: the inputs are the first element
    np.testing.assert_array_equal(stacked, xs)
    assert stacked.dtype == np.float32
    first = inputs.from_batches(loader, max_batches=1)
    np.testing.assert_array_equal(first, data)
    assert_same_analysis(analyse(ckpt[1], first).to_dict(), analyse(ckpt[1], data), batch=B)
    np.testing.assert_array_equal(inputs.from_batches([data, more[:1]]), xs[:3])  # NumPy batches too
    import itertools

    np.testing.assert_array_equal(
        inputs.from_batches(itertools.repeat(data), max_batches=2), np.concatenate([data, data])
    )


@pytest.mark.parametrize(
    "batches, needle",
    [
        ([np.zeros((2, T, M)), np.zeros((2, T + 1, M))], "batch 1 has shape (2, 7, 2) but batch 0 has (2, 6, 2)"),
        ([np.zeros((2, T, M)), np.zeros((1, T, 3))], "same length T = 6 and input size m = 2"),
        ([np.zeros((T, M))], "batch 0 has shape (6, 2): expected (batch, T, m)"),
        ([np.zeros((2, T, M), np.int32)], "dtype int32"),
        ([{"x": np.zeros((2, T, M))}], "from_batches(b['x'] for b in loader)"),
        ([], "no batches"),
    ],
)
def test_from_batches_errors(batches, needle):
    with pytest.raises(GradscopeError) as e:
        inputs.from_batches(batches)
    assert needle in str(e.value)


def test_readme_own_data_example_runs(tmp_path, monkeypatch):
    """README's "Analyse on your own data" example, shrunk (T) so that it runs in a test; skipped until the
    section is in README."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    if "## Analyse on your own data" not in text:
        pytest.skip("README has no 'Analyse on your own data' section yet")
    section = text.split("## Analyse on your own data", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python", 1)[1].split("```", 1)[0].replace("(4, 100, 2)", "(2, 8, 2)")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "mine.npy").exists()
