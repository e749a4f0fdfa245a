"""`gs.io.from_torch` / `from_flax` / `load_model` / `inspect_file` and the CLI on the modern recurrences.

* parity: ``from_torch(module)`` of a small random reference module (transformers Mamba/Mamba-2 mixers, xlstm
  sLSTMLayer/sLSTMCell, mingru-pytorch minGRU/minLSTM, lru-pytorch LRU, recurrentgemma's RG-LRU in Flax and
  PyTorch) rolls out to the reference's own outputs (the reference packages are the truth, float64 where they
  allow it);
* files: a saved ``.safetensors`` of each is recognised by `inspect_file` / ``gradscope inspect`` (architecture,
  sizes) and analysed by ``gradscope analyse --weights``;
* bad input, for every importer × failure kind (missing tensor, wrong shape, NaN, unknown tensor): one
  `GradscopeError` line naming the tensor from Python, exit code 2 and one ``error:`` line from the CLI;
* ambiguity (two layouts in one file) is refused with a message naming both;
* export and description go through the model protocol (``named_cells``).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import gradscope as gs
from gradscope import cli
from gradscope._errors import GradscopeError
from gradscope._rollout import rollout
from gradscope.io import mamba as io_mamba
from gradscope.io.formats import ImportFormatError, write_npz, write_safetensors

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("xlstm")
pytest.importorskip("minGRU_pytorch")
pytest.importorskip("LRU_pytorch")
pytest.importorskip("recurrentgemma")
import LRU_pytorch  # noqa: E402
from recurrentgemma.jax import layers as rg_jax  # noqa: E402
from recurrentgemma.torch import layers as rg_torch  # noqa: E402
from transformers.models.mamba import modeling_mamba as hf1  # noqa: E402
from transformers.models.mamba2 import modeling_mamba2 as hf2  # noqa: E402
from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig  # noqa: E402
from xlstm.blocks.slstm.layer import sLSTMLayer, sLSTMLayerConfig  # noqa: E402

# the package's modules share their classes' names: take the classes explicitly
minGRU = getattr(importlib.import_module("minGRU_pytorch.minGRU"), "minGRU")
minLSTM = getattr(importlib.import_module("minGRU_pytorch.minLSTM"), "minLSTM")
runner = CliRunner()
TOL32: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)  # references that compute in float32 inside
TOL64: dict[str, Any] = dict(rtol=1e-10, atol=1e-12)
T = 6


def _np(t):
    return t.detach().cpu().numpy()


def _randomise(module, seed, scale=0.5):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_complex():
                p.copy_(torch.complex(torch.randn_like(p.real), torch.randn_like(p.real)) * scale)
            else:
                p.normal_(0.0, scale)
    return module


# ------------------------------------------------------------------------------------ reference modules
def mamba_mixer(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.MambaConfig(
        hidden_size=4, state_size=3, expand=2, conv_kernel=3, time_step_rank=2, num_hidden_layers=1, vocab_size=8
    )
    mix = hf1.MambaMixer(cfg, 0).double().eval()
    with torch.no_grad():
        mix.A_log.add_(0.3 * torch.randn_like(mix.A_log))
        mix.D.add_(0.5 * torch.randn_like(mix.D))
    return mix


def mamba2_config(layers=1):
    return transformers.Mamba2Config(
        hidden_size=4,
        state_size=3,
        num_heads=4,
        head_dim=2,
        n_groups=2,
        expand=2,
        conv_kernel=3,
        chunk_size=4,
        num_hidden_layers=layers,
        vocab_size=8,
    )


def mamba2_mixer(seed=0):
    torch.manual_seed(seed)
    mix = hf2.Mamba2Mixer(mamba2_config(), 0).double().eval()
    with torch.no_grad():
        mix.A_log.add_(0.3 * torch.randn_like(mix.A_log))
        mix.D.add_(0.5 * torch.randn_like(mix.D))
    return mix


def slstm_layer(seed=0):
    cfg = sLSTMLayerConfig(embedding_dim=4, num_heads=2, backend="vanilla", conv1d_kernel_size=0)
    return _randomise(sLSTMLayer(cfg).double(), seed)


def lru(seed=0, dtype=torch.float64):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the package builds its parameters and outputs in the default dtype
    try:
        torch.manual_seed(seed)
        return LRU_pytorch.LRU(3, 2, 4, rmin=0.5, rmax=0.99)  # pyright: ignore[reportArgumentType]
    finally:
        torch.set_default_dtype(before)


def rglru_torch(seed=0):
    torch.manual_seed(seed)
    mod = rg_torch.RGLRU(width=4, num_heads=2)
    with torch.no_grad():
        for b in (mod.input_gate.b, mod.a_gate.b):
            b.normal_(0, 0.5)
    return mod


def rglru_flax(seed=0):
    mod = rg_jax.RGLRU(width=4, num_heads=2)
    params = jax.jit(mod.init)(jax.random.key(seed), jnp.zeros((1, T, 4)), jnp.arange(T)[None])
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(lambda a: a + rng.normal(0, 0.5, a.shape).astype(a.dtype), params)
    return mod, params


def _readouts(cell, xs, state0=None):
    """The layer output y_t = readout(S_t, x_t) of a gradscope cell, t = 1..T."""
    tr = rollout(cell, jnp.asarray(xs), state0)
    states = tuple(s[1:] for s in tr.states)
    return np.asarray(jax.vmap(lambda s, x: cell.readout(s, x))(states, jnp.asarray(xs))), tr


# ------------------------------------------------------------------------------------ parity
def test_mamba_mixer_through_from_torch_reproduces_the_mixer():
    mix = mamba_mixer()
    cell = gs.io.from_torch(mix)
    assert type(cell).__name__ == "Mamba" and (cell.input_size, cell.hidden_size) == (8, 3)
    hs = torch.randn(1, T, 4, dtype=torch.float64)
    u, z = io_mamba.ssm_inputs(mix.state_dict(), _np(hs[0]))
    y, _ = _readouts(cell, u)
    with torch.no_grad():  # the mixer = out_proj(y ⊙ SiLU(z)) around the core
        want = mix(hs)[0]
        got = mix.out_proj(torch.from_numpy(y.copy()) * torch.nn.functional.silu(torch.from_numpy(z)))
    np.testing.assert_allclose(_np(got), _np(want), **TOL32)


def test_mamba2_mixer_and_model_through_from_torch():
    mix = mamba2_mixer()
    cell = gs.io.from_torch(mix)  # n_groups and state size from the mixer's attributes
    assert (cell.num_heads, cell.n_groups, cell.hidden_size) == (4, 2, 3)
    hs = torch.randn(1, T, 4, dtype=torch.float64)
    u, z = io_mamba.ssm_inputs(mix.state_dict(), _np(hs[0]))
    y, _ = _readouts(cell, u)
    with torch.no_grad():  # the mixer = out_proj(gated RMSNorm(y, z))
        want = mix(hs)[0]
        got = mix.out_proj(mix.norm(torch.from_numpy(y.copy())[None], torch.from_numpy(z)[None]))[0]
    np.testing.assert_allclose(_np(got), _np(want), **TOL32)
    # a whole Mamba2Model: its config gives the group count, layer= picks a layer
    torch.manual_seed(1)
    model = transformers.Mamba2Model(mamba2_config(layers=2)).double()
    one: Any = gs.io.from_torch(model, layer=1)
    ref: Any = io_mamba.from_state_dict(model.state_dict(), layer=1, n_groups=2)
    np.testing.assert_array_equal(one.A_log, ref.A_log)
    with pytest.raises(ImportFormatError, match="layer=0..1"):
        gs.io.from_torch(model)


def test_mamba_model_becomes_a_stack_of_its_mixers():
    torch.manual_seed(2)
    cfg = transformers.MambaConfig(
        hidden_size=4, state_size=3, expand=2, conv_kernel=3, time_step_rank=2, num_hidden_layers=2, vocab_size=8
    )
    model = transformers.MambaModel(cfg).double()
    net = gs.io.from_torch(model)
    assert [p for p, _ in net.named_cells()] == ["layer0.", "layer1."]
    for (_, c), layer in zip(net.named_cells(), model.layers):
        np.testing.assert_array_equal(c.A_log, _np(layer.mixer.A_log))


def test_slstm_layer_and_cell_through_from_torch():
    ref = slstm_layer(0)
    cell = gs.io.from_torch(ref)
    xs = np.random.default_rng(1).normal(size=(T, 4))
    with torch.no_grad():
        out = ref(torch.tensor(xs)[None])[0]
    y, _ = _readouts(cell, xs)
    np.testing.assert_allclose(y, _np(out), **TOL64)
    # the bare cell: its input is the gate pre-activations, its h the forward output
    c = _randomise(
        sLSTMCell(
            sLSTMCellConfig(
                backend="vanilla", hidden_size=4, num_heads=2, recurrent_weight_init="standard", bias_init="standard"
            )
        ).double(),
        1,
    )
    xs = np.random.default_rng(2).normal(size=(1, T, 16))
    with torch.no_grad():
        out, _ = c(torch.tensor(xs))
    tr = rollout(gs.io.from_torch(c), jnp.asarray(xs[0]))
    np.testing.assert_allclose(np.asarray(tr["h"][1:]), _np(out)[0].transpose(1, 0, 2).reshape(T, 4), **TOL64)


@pytest.mark.parametrize("cls", [minGRU, minLSTM])
def test_mingru_minlstm_through_from_torch(cls):
    torch.manual_seed(0)
    ref = cls(3, expansion_factor=2.0).double()
    cell = gs.io.from_torch(ref)
    x = torch.randn(1, T, 3, dtype=torch.float64)
    with torch.no_grad():
        want = ref(x)[0]
    y, _ = _readouts(cell, _np(x[0]))
    np.testing.assert_allclose(y, _np(want), **TOL64)


def test_lru_through_from_torch():
    ref = lru()
    cell = gs.io.from_torch(ref)
    xs = np.random.default_rng(3).normal(size=(T, 3))
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the package's forward builds its state in the default dtype
    try:
        with torch.no_grad():
            want = ref(torch.from_numpy(xs))
    finally:
        torch.set_default_dtype(before)
    assert cell.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(rollout(cell, jnp.asarray(xs)).aux["y"]), _np(want), **TOL64)


def test_rglru_flax_tree_through_from_flax_and_torch_port_through_from_torch():
    mod, params = rglru_flax()
    cell = gs.io.from_flax(params, reset_at_start=True)
    assert type(cell).__name__ == "RGLRU" and cell.num_heads == 2
    xs = np.random.default_rng(4).normal(size=(T, 4)).astype(np.float32)
    y, _ = jax.jit(mod.apply)(params, jnp.asarray(xs)[None], jnp.arange(T)[None])  # a segment from position 0
    tr = rollout(cell, jnp.asarray(xs))
    np.testing.assert_allclose(np.asarray(tr.states[0][1:]), np.asarray(y[0]), **TOL32)
    ref = rglru_torch()
    x, h0 = torch.randn(1, 5, 4), torch.randn(1, 4)
    with torch.no_grad():
        want, _ = ref(x, torch.arange(1, 6)[None], cache=h0)  # a continuation: reset_at_start=False
    tr = rollout(gs.io.from_torch(ref), jnp.asarray(_np(x[0])), (jnp.asarray(_np(h0[0])),))
    np.testing.assert_allclose(np.asarray(tr.states[0][1:]), _np(want[0]), **TOL32)


# ------------------------------------------------------------------------------------ files, inspect, CLI
def _st(module):
    return {k: _np(v).astype(np.complex64 if v.is_complex() else np.float32) for k, v in module.state_dict().items()}


def _files(tmp_path):
    """One float32 .safetensors per importer, with what inspect should say: (architecture words, sizes)."""
    mix2 = mamba2_mixer()
    _, params = rglru_flax()
    from flax import traverse_util

    out = {
        "mamba": (_st(mamba_mixer()), {}, "MambaMixer", dict(input_size=8, hidden_size=3)),
        "mamba2": (_st(mix2), {"n_groups": "2"}, "Mamba2Mixer", dict(input_size=24, hidden_size=3)),
        "xlstm": (_st(slstm_layer()), {}, "sLSTMLayer", dict(input_size=4, hidden_size=4)),
        "mingru": (_st(minGRU(3, expansion_factor=2.0)), {}, "minGRU", dict(input_size=3, hidden_size=6)),
        "lru": (_st(lru(dtype=torch.float32)), {}, "LRU", dict(input_size=3, hidden_size=4)),
        "rglru": (
            {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()},
            {},
            "RG-LRU",
            dict(input_size=4, hidden_size=4),
        ),
    }
    paths = {}
    for name, (arrays, meta, words, sizes) in out.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        write_safetensors(paths[name], arrays, meta)
    return paths, out


def test_inspect_load_model_and_cli_on_saved_files(tmp_path):
    paths, out = _files(tmp_path)
    for name, path in paths.items():
        info = gs.io.inspect_file(path)
        assert info["problem"] is None, (name, info["problem"])
        m = info["mapping"]
        assert out[name][2] in m["architecture"], (name, m)
        assert {k: m[k] for k in out[name][3]} == out[name][3], (name, m)
        model = gs.io.load_model(path)
        assert model.input_size == out[name][3]["input_size"]
        res = runner.invoke(cli.app, ["inspect", str(path)])
        assert res.exit_code == 0 and out[name][2] in res.stdout, res.output
        d = json.loads(runner.invoke(cli.app, ["inspect", str(path), "--json"]).stdout)
        assert d["framework"] == ("mamba" if name.startswith("mamba") else name)
    # the safetensors package's own complex64 encoding (C64) of lru-pytorch reads back
    st = pytest.importorskip("safetensors.torch")
    ref = lru(dtype=torch.float32)
    st.save_file(ref.state_dict(), str(tmp_path / "pkg.safetensors"))
    np.testing.assert_array_equal(gs.io.load_model(tmp_path / "pkg.safetensors").B_im, _np(ref.B.imag))
    # without its group count a Mamba-2 file says what to pass; a transformers config.json next to it gives it
    folder = tmp_path / "m2"
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", out["mamba2"][0])
    assert "n_groups=" in gs.io.inspect_file(folder / "model.safetensors")["problem"]
    (folder / "config.json").write_text(json.dumps(mamba2_config().to_dict()))
    assert gs.io.inspect_file(folder / "model.safetensors")["mapping"]["cell_config"]["n_groups"] == 2


def _lru_split(n, m, p, seed=0):
    """An LRU layer in the paper's Flax layout (real and imaginary parts apart): n states, m inputs, p outputs."""
    r = np.random.default_rng(seed)
    shapes = {"nu_log": (n,), "theta_log": (n,), "gamma_log": (n,), "B_re": (n, m), "B_im": (n, m)}
    shapes |= {"C_re": (p, n), "C_im": (p, n), "D": (p, m)}
    return {k: r.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}


def _mlstm_cell(heads=2, E=4):
    r = np.random.default_rng(0)
    shapes = {"igate.weight": (heads, 3 * E), "igate.bias": (heads,), "fgate.weight": (heads, 3 * E)}
    shapes |= {"fgate.bias": (heads,), "outnorm.weight": (E,)}
    return {k: r.normal(0, 0.5, s).astype(np.float32) for k, s in shapes.items()}


def _more_files() -> dict[str, tuple[dict, dict]]:
    """Modern layouts beyond `_files`: name -> (tensors, metadata)."""
    torch.manual_seed(2)
    mamba = transformers.MambaConfig(
        hidden_size=4, state_size=3, expand=2, conv_kernel=3, time_step_rank=2, num_hidden_layers=2, vocab_size=8
    )
    slstm = sLSTMCellConfig(
        backend="vanilla", hidden_size=4, num_heads=2, recurrent_weight_init="standard", bias_init="standard"
    )
    mingru = _st(minGRU(3, expansion_factor=1.0))
    cuda = np.random.default_rng(0).normal(size=(2, 2, 8)).astype(np.float32)  # the cuda backend's R layout
    return {
        "mamba-model": (_st(transformers.MambaModel(mamba)), {}),
        "mamba2-limit": (_st(mamba2_mixer()), {"state_size": "3", "time_step_limit": "[0.01, 5.0]"}),
        "slstm-cell": (_st(sLSTMCell(slstm)), {}),
        "slstm-cell-cuda": ({"cell._recurrent_kernel_": cuda, "cell._bias_": np.zeros(16, np.float32)}, {}),
        "mlstm-cell": (_mlstm_cell(), {}),
        "minlstm": (_st(minLSTM(3, expansion_factor=1.0)), {}),
        "mingru-stack": ({f"layers.{i}.{k}": v for i in range(2) for k, v in mingru.items()}, {}),
        "lru-flax-stack": ({f"params/LRU_{i}/{k}": v for i in range(2) for k, v in _lru_split(4, 3, 3).items()}, {}),
        "rglru-torch": (_st(rglru_torch()), {"reset_at_start": "true"}),
    }


def test_inspect_describes_the_built_model(tmp_path):
    """`inspect_file` describes the importer's plan without building it: its mapping equals the description of the
    model `load_model` builds (tests/_io_ref.py), for every modern architecture."""
    from tests._io_ref import assert_inspect_describes_the_model

    paths, _ = _files(tmp_path)
    for name, (tensors, meta) in _more_files().items():
        paths[name] = tmp_path / f"{name}.safetensors"
        write_safetensors(paths[name], tensors, meta)
    for name, path in paths.items():
        mapping = assert_inspect_describes_the_model(path)
        assert mapping["dtype"] == "float32", name
    (tmp_path / "config.json").write_text(json.dumps(mamba2_config().to_dict()))  # n_groups and time_step_limit
    write_safetensors(tmp_path / "m2.safetensors", _st(mamba2_mixer()))
    assert_inspect_describes_the_model(tmp_path / "m2.safetensors")
    write_npz(tmp_path / "lru64.npz", {k: _np(v) for k, v in lru().state_dict().items()})  # complex128 and float64
    assert assert_inspect_describes_the_model(tmp_path / "lru64.npz")["dtype"] == "float64"


def test_inspect_problem_is_the_import_error(tmp_path, bad_sources):
    """A file that reads, in a layout gradscope recognises, but does not map: `inspect_file`'s problem is the error
    `load_model` raises, the checks of the built model's networks (a stack's widths) included."""
    torch.manual_seed(3)
    files = {
        "lru-stack-widths": {
            f"{i}.{k}": v for i, (m, p) in enumerate([(3, 2), (3, 3)]) for k, v in _lru_split(4, m, p).items()
        },
        "mamba2-without-groups": _st(mamba2_mixer()),
        "mamba2-layers": _st(transformers.Mamba2Model(mamba2_config(layers=2))),
        "slstm-layer-conv": _st(
            sLSTMLayer(sLSTMLayerConfig(embedding_dim=4, num_heads=2, backend="vanilla", conv1d_kernel_size=4))
        ),
        "rglru-complex": _st(rglru_torch()) | {"a_imag_param": np.zeros(4, np.float32)},
        "mlstm-heads": {k: v[..., :-1] if k == "igate.weight" else v for k, v in _mlstm_cell().items()},
    }
    for name, (arrays, tensors) in bad_sources.items():
        for failure in FAILURES:
            sd, _ = _break(arrays, tensors, failure)
            files[f"{name}-{failure}"] = {
                k: v.astype(np.complex64 if np.iscomplexobj(v) else np.float32) for k, v in sd.items()
            }
    for name, tensors in files.items():
        path = tmp_path / f"{name}.safetensors"
        write_safetensors(path, tensors)
        with pytest.raises(GradscopeError) as err:
            gs.io.load_model(path)
        info = gs.io.inspect_file(path)
        if info["framework"] is None:  # no layout recognised at all: inspect says so in its own words
            assert "match no supported layout" in info["problem"], name
            continue
        assert info["mapping"] is None and info["problem"] == str(err.value), name


def test_inspect_does_not_import_jax(tmp_path):
    """`inspect_file` reads and plans with NumPy alone: a fresh interpreter describes a file of every modern
    architecture without importing JAX (a Mamba-2 file that sets a time_step_limit included)."""
    paths, _ = _files(tmp_path)
    for name, (tensors, meta) in _more_files().items():
        paths[name] = tmp_path / f"{name}.safetensors"
        write_safetensors(paths[name], tensors, meta)
    code = (
        "import sys; from gradscope.io import inspect_file\n"
        "for p in sys.argv[1:]: assert inspect_file(p)['mapping'] is not None, p\n"
        "print('jax' in sys.modules)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths.values())], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mamba", "xlstm", "mingru", "lru", "rglru"])
def test_cli_analyse_weights(tmp_path, name):
    paths, _ = _files(tmp_path)
    res = runner.invoke(
        cli.app,
        ["analyse", "--weights", str(paths[name]), "--length", "6", "--batch", "1", "--out", str(tmp_path / "r")]
        + ["--json", "-q"],
    )
    assert res.exit_code == 0, res.output
    (a,) = json.loads(res.stdout)["analyses"]
    assert np.isfinite(a["summary"]["log10_norm_max_lag"])


# ------------------------------------------------------------------------------------ bad input
def _bad_sources():
    """importer -> (a valid float64 state dict, {failure: (tensor to break, needle in the message)})."""
    return {
        "mamba": (
            {k: _np(v) for k, v in mamba_mixer().state_dict().items()},
            {"missing": "dt_proj.bias", "shape": "D", "nan": "x_proj.weight"},
        ),
        "xlstm": (
            {k: _np(v) for k, v in slstm_layer().state_dict().items()},
            {"missing": "zgate.weight", "shape": "slstm_cell._bias_", "nan": "igate.weight"},
        ),
        "mingru": (
            {k: _np(v) for k, v in minGRU(3, expansion_factor=2.0).double().state_dict().items()},
            {"missing": "to_hidden_and_gate.weight", "shape": "to_out.weight", "nan": "to_hidden_and_gate.weight"},
        ),
        "lru": ({k: _np(v) for k, v in lru().state_dict().items()}, {"missing": "gamma_log", "shape": "C", "nan": "B"}),
        "rglru": (
            {k: _np(v).astype(np.float64) for k, v in rglru_torch().state_dict().items()},
            {"missing": "a_gate", "shape": "input_gate.b", "nan": "a_param"},
        ),
    }


FAILURES = ("missing", "shape", "nan", "extra")


def _break(arrays, tensors, failure):
    sd = {k: np.array(v) for k, v in arrays.items()}
    if failure == "extra":
        sd["bogus.weight"] = np.zeros((2, 2))
        return sd, "bogus.weight"
    key = tensors[failure]
    name = next(k for k in sd if k == key or k.startswith(key + "."))
    if failure == "missing":
        del sd[name]
    elif failure == "shape":
        sd[name] = sd[name][..., :-1] if sd[name].ndim > 0 and sd[name].shape[-1] > 1 else np.zeros((7, 7))
    else:
        sd[name].flat[0] = np.nan
    return sd, key


@pytest.fixture(scope="module")
def bad_sources():
    return _bad_sources()


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("name", ["mamba", "xlstm", "mingru", "lru", "rglru"])
def test_bad_input_is_one_clear_error(bad_sources, tmp_path, name, failure):
    arrays, tensors = bad_sources[name]
    gs.io.from_torch(arrays)  # the unbroken state dict imports
    sd, needle = _break(arrays, tensors, failure)
    with pytest.raises(GradscopeError) as err:
        gs.io.from_torch(sd)
    msg = str(err.value)
    assert isinstance(err.value, ImportFormatError) and "\n" not in msg and needle in msg, msg
    if failure == "nan":
        assert "NaN" in msg
    # the CLI: exit 2, one line on stderr, no traceback
    path = tmp_path / "bad.safetensors"
    write_safetensors(path, {k: v.astype(np.complex64 if np.iscomplexobj(v) else np.float32) for k, v in sd.items()})
    res = runner.invoke(cli.app, ["analyse", "--weights", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_two_layouts_are_ambiguous_and_prefix_or_framework_chooses(bad_sources):
    g, _ = bad_sources["mingru"]
    l, _ = bad_sources["lru"]
    sd = {f"a.{k}": v for k, v in g.items()} | {f"b.{k}": v for k, v in l.items()}
    for call in (gs.io.from_torch, gs.io.load_model):
        with pytest.raises(ImportFormatError, match="several layouts") as err:
            call(sd)
        assert "mingru" in str(err.value) and "lru" in str(err.value) and "framework=" in str(err.value)
    assert type(gs.io.from_torch(sd, prefix="b.")).__name__ == "LRU"
    assert type(gs.io.load_model(sd, framework="mingru", prefix="a.")).__name__ == "MinGRU"
    lstm = {f"rnn.{k}": _np(v) for k, v in torch.nn.LSTM(3, 4).state_dict().items()}
    with pytest.raises(ImportFormatError, match="several layouts"):
        gs.io.from_torch(lstm | l)
    with pytest.raises(ImportFormatError, match="option layer= is not allowed"):
        gs.io.from_torch(l, layer=0)
    with pytest.raises(ImportFormatError, match="kind='mamba3' is not allowed"):
        gs.io.from_torch(l, kind="mamba3")


# ------------------------------------------------------------------------------------ model protocol
def test_export_and_description_walk_named_cells():
    from gradscope.io import DeepBidirectional
    from gradscope.nets import Bidirectional, Stack
    from tests._io_ref import describe_model

    torch.manual_seed(0)
    ref = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    deep = gs.io.from_torch(ref.state_dict())
    assert isinstance(deep, DeepBidirectional)
    assert [p for p, _ in deep.named_cells()] == ["layer0.fwd.", "layer0.bwd.", "layer1.fwd.", "layer1.bwd."]
    back = gs.io.to_torch_state_dict(deep)
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(back[k], _np(v))
    d = describe_model(deep)
    assert (d["num_layers"], d["bidirectional"], d["structure"], d["state_size"]) == (2, True, "DeepBidirectional", 16)
    # a Bidirectional of two Stacks runs the directions apart (layer 1 never sees the other direction): not
    # PyTorch's multi-layer bidirectional wiring, so its "fwd.layer1." cells are refused, as are nested Stacks
    stack = gs.io.from_torch(torch.nn.GRU(3, 4, num_layers=2).state_dict())
    assert isinstance(stack, Stack)
    with pytest.raises(ImportFormatError, match="'fwd.layer0.' is nested"):
        gs.io.to_torch_state_dict(Bidirectional(stack, stack))
    with pytest.raises(ImportFormatError, match="'layer0.layer0.' is nested"):
        gs.io.to_torch_state_dict(Stack((Stack((stack.layers[0],)),)))
