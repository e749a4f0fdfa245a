"""``gradscope compare --weights a.safetensors,b.safetensors,…``: checkpoints side by side in one report.

Each analysis must equal `gs.analyse` of the checkpoint loaded directly (`gs.io.load_model`) on the same
input arrays (written to an .npy by the test), and, on generated inputs, what ``gradscope analyse --weights``
reports for that file alone. Checkpoints come from `gradscope.io.save_safetensors` and (slow tier, with torch)
from an ``nn.LSTM`` state dict saved with ``safetensors.torch``. Bad checkpoint lists give one
line on stderr and exit code 2.
"""

import json

import numpy as np
import pytest

import gradscope as gs
from gradscope.analysis import analyse
from gradscope.cli._checkpoints import unique_names
from gradscope.io import save_safetensors
from gradscope.io.formats import write_npz
from tests._cli import assert_error, run

B, T, M, H = 2, 6, 2, 3


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two LSTM checkpoints exported by gradscope (input size 2, hidden 3), the second in a sub-folder under
    the same stem."""
    import jax

    d = tmp_path_factory.mktemp("ckpts")
    (d / "run2").mkdir()
    paths = [d / "lstm.safetensors", d / "run2" / "lstm.safetensors"]
    for i, p in enumerate(paths):
        save_safetensors(gs.cells.make("lstm", M, H, key=jax.random.key(10 + i)), p)
    return paths


def _close(record, ref):
    r = ref.to_dict()
    np.testing.assert_allclose(record["lag_profile"]["log10_spectral"], r["lag_profile"]["log10_spectral"], rtol=1e-5)
    for key in ("log10_norm_max_lag", "decay_per_step", "lyapunov_max"):
        np.testing.assert_allclose(record["summary"][key], r["summary"][key], rtol=1e-5, atol=1e-7)
    assert record["summary"]["horizon"] == r["summary"]["horizon"]


@pytest.mark.slow
def test_compare_checkpoints_on_a_file_equals_loading_each(tmp_path, ckpts):
    xs = np.random.default_rng(0).normal(size=(B, T, M)).astype(np.float32)
    np.save(tmp_path / "x.npy", xs)
    weights = ",".join(map(str, ckpts))
    res = run("compare", "--weights", weights, "--input", tmp_path / "x.npy", "--out", tmp_path / "o", "--json", "-q")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert [a["name"] for a in rep["analyses"]] == ["lstm", "lstm#2"]
    assert [c["file"] for c in rep["config"]["checkpoints"]] == [str(p) for p in ckpts]
    assert rep["config"]["input_file"]["shape"] == [B, T, M] and rep["command"] == "compare"
    for a, p in zip(rep["analyses"], ckpts):
        assert (a["length"], a["batch"]) == (T, B)
        _close(a, analyse(gs.io.load_model(str(p), dtype="float32"), xs))
    # the two exports differ: the comparison is of different weights, not one analysis repeated
    assert rep["analyses"][0]["summary"]["log10_norm_max_lag"] != rep["analyses"][1]["summary"]["log10_norm_max_lag"]


@pytest.mark.slow
def test_compare_torch_checkpoint_equals_analyse_weights(tmp_path, ckpts):
    """A PyTorch nn.LSTM state dict (safetensors.torch) next to a gradscope export, on generated inputs: each
    analysis is what `gradscope analyse --weights FILE` reports for that file alone (same inputs per seed)."""
    torch = pytest.importorskip("torch")
    save_file = pytest.importorskip("safetensors.torch").save_file
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(M, H, batch_first=True)
    save_file({k: v.contiguous() for k, v in lstm.state_dict().items()}, tmp_path / "torch.safetensors")
    files = [tmp_path / "torch.safetensors", ckpts[0]]
    flags = ["--input", "noise", "--length", T, "--batch", B, "--seed", 1, "--json", "-q"]
    res = run("compare", "--weights", ",".join(map(str, files)), "--out", tmp_path / "c", *flags)
    assert res.exit_code == 0, res.output
    both = json.loads(res.stdout)["analyses"]
    assert [a["name"] for a in both] == ["torch", "lstm"]
    for i, f in enumerate(files):
        one = run("analyse", "--weights", f, "--out", tmp_path / f"a{i}", *flags)
        assert one.exit_code == 0, one.output
        ref = json.loads(one.stdout)["analyses"][0]
        assert both[i]["lag_profile"] == ref["lag_profile"] and both[i]["summary"] == ref["summary"]


def test_unique_names():
    from pathlib import Path

    paths = [Path("a/model.safetensors"), Path("b/model.safetensors"), Path("c.npz"), Path("d/model.pt")]
    assert unique_names(paths) == ["model", "model#2", "c", "model#3"]


def test_bad_checkpoint_lists(tmp_path, ckpts):
    import jax

    save_safetensors(gs.cells.make("gru", 3, H, key=jax.random.key(0)), tmp_path / "gru3.safetensors")
    write_npz(tmp_path / "junk.npz", {"foo": np.zeros(3)})
    np.save(tmp_path / "x3.npy", np.zeros((B, T, 3), np.float32))
    a, out = ckpts[0], tmp_path / "o"
    cases = [
        (["--weights", f"{a},{tmp_path / 'nope.safetensors'}"], ("nope.safetensors", "does not exist")),
        (["--weights", f"{a},{tmp_path / 'gru3.safetensors'}"], ("different sizes", "takes 2", "takes 3")),
        (["--weights", f"{a},{tmp_path / 'junk.npz'}"], ("junk.npz", "no supported layout")),
        (["--weights", f"{a},"], ("--weights",)),
        (["--weights", a, "--cells", "lstm"], ("not allowed with --weights",)),
        (["--weights", a, "--hidden", 4], ("not allowed with --weights",)),
        (["--weights", a, "--input", tmp_path / "x3.npy"], ("size 3", "take 2", "2 features per step")),
        (["--weights", a, "--input-size", 3], ("--input-size=3", "size 2")),
    ]
    for args, needles in cases:
        assert_error(run("compare", *args, "--out", out, "-q"), *needles)
        assert not out.exists()
