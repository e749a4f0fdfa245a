"""sLSTM and mLSTM (Beck et al. 2024) against independent truth, in float64:

* the `xlstm` package (PyTorch, vanilla backend, on CPU, ``.double()``): states and outputs of its sLSTM
  cell / conv-free sLSTM layer forward and of its mLSTM cell's recurrent step, after importing the
  package's state dict with `gradscope.io.xlstm`; the package step's Jacobian by `torch.func.jacrev`
  equals the cells' analytic ``jacobian`` (at a generic state and at the zero state, where the package
  resets the stabiliser); its cuda-layout state dict imports to the same cell;
* NumPy float64 recurrences *without* the stabiliser m give the same h_t (m cancels), and overflow where
  the stabilised cells stay finite;
* lag profiles == NumPy norms of `jax.jacrev` of the unrolled map (1e-10) for each cell alone, in a
  2-layer Stack (first layer with the per-head norm readout) and in a Bidirectional net;
* the engine's other products run and are finite; option and import errors name what is wrong.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import block_ranges, build, inputs, oracle

import gradscope as gs
from gradscope import engine
from gradscope._errors import ConfigError, GradscopeError
from gradscope.cells.xlstm import MLSTM, SLSTM
from gradscope.io import xlstm as xio
from gradscope.nets import Bidirectional, Stack

torch = pytest.importorskip("torch")
pytest.importorskip("xlstm")
from xlstm.blocks.mlstm.backends import recurrent_step_stabilized_simple  # noqa: E402
from xlstm.blocks.mlstm.cell import mLSTMCell, mLSTMCellConfig  # noqa: E402
from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCell_cuda, sLSTMCellConfig  # noqa: E402
from xlstm.blocks.slstm.layer import sLSTMLayer, sLSTMLayerConfig  # noqa: E402

TOL = dict(rtol=1e-11, atol=1e-12)
N, HEADS = 4, 2


def _np(t):
    return t.detach().cpu().numpy()


def _randomise(module, seed, scale=0.5):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)
    return module


def _slstm_config(**kw):
    return dict(hidden_size=N, num_heads=HEADS, recurrent_weight_init="standard", bias_init="standard", **kw)


def _torch_slstm(seed=0):
    return _randomise(sLSTMCell(sLSTMCellConfig(backend="vanilla", **_slstm_config())).double(), seed)


def _torch_slstm_layer(seed=0, conv=0):
    cfg = sLSTMLayerConfig(
        embedding_dim=N,
        num_heads=HEADS,
        backend="vanilla",
        conv1d_kernel_size=conv,
        recurrent_weight_init="standard",
        bias_init="standard",
    )
    return _randomise(sLSTMLayer(cfg).double(), seed)


def _torch_mlstm(seed=0):
    return _randomise(mLSTMCell(mLSTMCellConfig(context_length=8, embedding_dim=N, num_heads=HEADS)).double(), seed)


def _generic_slstm_state(rng):
    # n away from 0 (h = o·c/n) and m generic, so that no tie ĩ = log f + m occurs
    return [rng.normal(size=N), rng.normal(size=N), rng.uniform(0.5, 2.0, N), rng.normal(size=N)]


# ------------------------------------------------------------------------------------------ sLSTM parity
def test_slstm_cell_matches_package_step_by_step_and_forward():
    ref = _torch_slstm(0)
    cell = xio.from_state_dict(ref.state_dict())
    assert isinstance(cell, SLSTM) and cell.input_size == 4 * N and cell.num_heads == HEADS
    rng = np.random.default_rng(0)
    B, T = 2, 6
    xs = rng.normal(size=(B, T, 4 * N))
    # the package, one step at a time from the zero state, every block of the state after every step
    st = torch.zeros(4, B, N, dtype=torch.float64)
    ref_states = []
    with torch.no_grad():
        for t in range(T):
            _, st = ref(torch.tensor(xs[:, t : t + 1]), st)
            ref_states.append(_np(st))
        out, final = ref(torch.tensor(xs))  # the whole sequence in one forward
    ref_states = np.stack(ref_states, 2)  # (4, B, T, n)
    tr = gs.rollout(cell, jnp.asarray(xs))
    for j, name in enumerate(cell.blocks):
        np.testing.assert_allclose(np.asarray(tr[name][:, 1:]), ref_states[j], **TOL, err_msg=name)
        np.testing.assert_allclose(np.asarray(tr[name][:, -1]), _np(final)[j], **TOL, err_msg=name)
    # forward's output (B, heads, T, Dh) is h at every step
    np.testing.assert_allclose(np.asarray(tr["h"][:, 1:]), _np(out).transpose(0, 2, 1, 3).reshape(B, T, N), **TOL)


def test_slstm_cuda_layout_imports_to_the_same_cell():
    # the cuda backend stores R as (heads, Dh, 4·Dh) and b head-major; built without compiling kernels
    van = _torch_slstm(1)
    cu = sLSTMCell_cuda(sLSTMCellConfig(backend="cuda", **_slstm_config()), skip_backend_init=True).double()
    with torch.no_grad():
        cu._recurrent_kernel_.copy_(cu._recurrent_kernel_ext2int(van.recurrent_kernel.clone()))
        cu._bias_.copy_(cu._bias_ext2int(van.bias.clone()))
    assert cu.state_dict()["_recurrent_kernel_"].shape != van.state_dict()["_recurrent_kernel_"].shape
    a, b = xio.from_state_dict(van.state_dict()), xio.from_state_dict(cu.state_dict())
    for f in ("weight_ih", "weight_hh", "bias"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_slstm_layer_without_conv_matches_package_outputs_and_state():
    ref = _torch_slstm_layer(2)
    cell = xio.from_state_dict(ref.state_dict())
    assert cell.input_size == N and cell.norm_scale is not None
    rng = np.random.default_rng(1)
    B, T = 2, 5
    xs = rng.normal(size=(B, T, N))
    with torch.no_grad():
        out, st = ref(torch.tensor(xs), return_last_state=True)
    tr = gs.rollout(cell, jnp.asarray(xs))
    ys = jax.vmap(jax.vmap(lambda s, x: cell.readout(s, x)))(tuple(s[:, 1:] for s in tr.states), jnp.asarray(xs))
    np.testing.assert_allclose(np.asarray(ys), _np(out), **TOL)
    np.testing.assert_allclose(
        np.asarray(tr.flat[:, -1]), _np(st["slstm_state"]).transpose(1, 0, 2).reshape(B, -1), **TOL
    )


@jax.jit
def _jacobian(cell, x, s):  # one compilation instead of many eager ops
    return cell.jacobian(x, gs.cells.unflatten_state(cell, s))


def _slstm_ref_step(ref):
    def f(s, x):
        _, st = ref(x.reshape(1, 1, -1), s.reshape(4, 1, N))
        return st.reshape(-1)

    return f


@pytest.mark.parametrize("where", ["generic", "zero"])
def test_slstm_jacobian_equals_package_jacrev(where):
    ref = _torch_slstm(3)
    cell = xio.from_state_dict(ref.state_dict())
    rng = np.random.default_rng(2)
    s = np.concatenate(_generic_slstm_state(rng)) if where == "generic" else np.zeros(4 * N)
    x = rng.normal(size=4 * N)
    Js, Jx = torch.func.jacrev(_slstm_ref_step(ref), argnums=(0, 1))(torch.tensor(s), torch.tensor(x))
    J, X = _jacobian(cell, jnp.asarray(x), jnp.asarray(s))
    np.testing.assert_allclose(np.asarray(J), _np(Js), **TOL)
    np.testing.assert_allclose(np.asarray(X), _np(Jx), **TOL)
    if where == "zero":  # the package's reset: m_1 = ĩ_1 does not read m_0
        np.testing.assert_array_equal(np.asarray(J)[3 * N :, 3 * N :], 0.0)


# ------------------------------------------------------------------------------------------ mLSTM parity
def _mlstm_ref_step(ref, normed=False):
    """(flat state [h, C, n, m], x = [q; k; v]) ↦ flat new state with the package's gates and recurrent step."""
    H, D = HEADS, N // HEADS

    def f(s, x):
        x = x.reshape(1, 1, -1)
        q, k, v = (x[..., i * N : (i + 1) * N].reshape(1, 1, H, D).transpose(1, 2) for i in range(3))
        ig = ref.igate(x).transpose(-1, -2).unsqueeze(-1)
        fg = ref.fgate(x).transpose(-1, -2).unsqueeze(-1)
        C = s[N : N + H * D * D].reshape(1, H, D, D)
        n = s[N + H * D * D : 2 * N + H * D * D].reshape(1, H, D, 1)
        m = s[2 * N + H * D * D :].reshape(1, H, 1, 1)
        h, (C2, n2, m2) = recurrent_step_stabilized_simple(C, n, m, q.clone(), k.clone(), v.clone(), ig, fg)
        h = ref.outnorm(h) if normed else h
        return torch.cat([h.reshape(-1), C2.reshape(-1), n2.reshape(-1), m2.reshape(-1)])

    return f


def test_mlstm_cell_matches_package_recurrent_step():
    ref = _torch_mlstm(4)
    cell = xio.from_state_dict(ref.state_dict())
    assert isinstance(cell, MLSTM) and cell.input_size == 3 * N and cell.weight_o is None
    rng = np.random.default_rng(3)
    B, T = 2, 6
    xs = rng.normal(size=(B, T, 3 * N))
    tr = gs.rollout(cell, jnp.asarray(xs))
    state = None
    with torch.no_grad():
        for t in range(T):
            q, k, v = (torch.tensor(xs[:, t : t + 1, i * N : (i + 1) * N]) for i in range(3))
            y, state = ref.step(q, k, v, mlstm_state=state)  # y: the per-head-normed h
            S = tuple(jax.tree_util.tree_map(lambda a: a[:, t + 1], tr.states))
            np.testing.assert_allclose(np.asarray(tr["C"][:, t + 1]), _np(state[0]).reshape(B, -1), **TOL)
            np.testing.assert_allclose(np.asarray(tr["n"][:, t + 1]), _np(state[1]).reshape(B, -1), **TOL)
            np.testing.assert_allclose(np.asarray(tr["m"][:, t + 1]), _np(state[2]).reshape(B, -1), **TOL)
            ys = jax.vmap(cell.readout)(S, jnp.asarray(xs[:, t]))
            np.testing.assert_allclose(np.asarray(ys), _np(y).reshape(B, N), **TOL)
    # the un-normed h block against the package's recurrent step itself
    f = _mlstm_ref_step(ref)
    with torch.no_grad():
        for t in range(T):
            s1 = f(torch.tensor(np.asarray(tr.flat[0, t])), torch.tensor(xs[0, t]))
            np.testing.assert_allclose(np.asarray(tr.flat[0, t + 1]), _np(s1), **TOL)


@pytest.mark.parametrize("where", ["generic", "zero"])
def test_mlstm_jacobian_equals_package_jacrev(where):
    ref = _torch_mlstm(5)
    cell = xio.from_state_dict(ref.state_dict())
    rng = np.random.default_rng(4)
    d = cell.state_size
    s = rng.normal(size=d) if where == "generic" else np.zeros(d)
    x = rng.normal(size=3 * N)
    Js, Jx = torch.func.jacrev(_mlstm_ref_step(ref), argnums=(0, 1))(torch.tensor(s), torch.tensor(x))
    J, X = _jacobian(cell, jnp.asarray(x), jnp.asarray(s))
    np.testing.assert_allclose(np.asarray(J), _np(Js), **TOL)
    np.testing.assert_allclose(np.asarray(X), _np(Jx), **TOL)
    np.testing.assert_array_equal(np.asarray(J)[:, :N], 0.0)  # h_t does not read h_{t-1}
    # the layer output (normed h) through the cell's readout Jacobian
    Jn = torch.func.jacrev(_mlstm_ref_step(ref, normed=True), argnums=0)(torch.tensor(s), torch.tensor(x))[:N]
    S2 = cell(jnp.asarray(x), gs.cells.unflatten_state(cell, jnp.asarray(s)))[0]
    Ry, _ = cell.readout_jacobian(S2, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(Ry @ J), _np(Jn), **TOL)


# ------------------------------------------------------------------------------ the stabiliser cancels
def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def _slstm_unstabilised(cell, xs):
    """h_t of c̄_t = f c̄ + exp(ĩ) tanh z̃, n̄_t = f n̄ + exp(ĩ), h = σ(õ) c̄/n̄ (no m), NumPy float64."""
    W, b = np.asarray(cell.weight_ih), np.asarray(cell.bias)
    R = np.asarray(cell.recurrent_matrix())
    n = cell.hidden_size
    h, c, nn = np.zeros(n), np.zeros(n), np.zeros(n)
    hs = []
    with np.errstate(over="ignore", invalid="ignore"):
        for x in xs:
            i_, f_, z_, o_ = np.split(W @ x + R @ h + b, 4)
            f = np.exp(f_) if cell.forget_gate == "exp" else _sig(f_)
            c = f * c + np.exp(i_) * np.tanh(z_)
            nn = f * nn + np.exp(i_)
            h = _sig(o_) * c / nn
            hs.append(h)
    return np.array(hs)


def _mlstm_unstabilised(cell, xs):
    """h_t of C̄ = f C̄ + exp(ĩ) k vᵀ, n̄ = f n̄ + exp(ĩ) k, h = o ⊙ C̄ᵀq / max(|n̄ᵀq|, 1) (no m, ε = 0)."""
    g = {
        f.name: (None if getattr(cell, f.name) is None else np.asarray(getattr(cell, f.name)))
        for f in dataclasses.fields(cell)
        if not f.metadata.get("static")
    }
    H, D = cell.num_heads, cell.head_dim
    C, nn = np.zeros((H, D, D)), np.zeros((H, D))
    hs = []
    with np.errstate(over="ignore", invalid="ignore"):
        for x in xs:
            q = (g["weight_q"] @ x + g["bias_q"]).reshape(H, D)
            k = (g["weight_k"] @ x + g["bias_k"]).reshape(H, D) / np.sqrt(D)
            v = (g["weight_v"] @ x + g["bias_v"]).reshape(H, D)
            i = np.exp(g["weight_i"] @ x + g["bias_i"])
            f_ = g["weight_f"] @ x + g["bias_f"]
            f = np.exp(f_) if cell.forget_gate == "exp" else _sig(f_)
            C = f[:, None, None] * C + i[:, None, None] * k[:, :, None] * v[:, None, :]
            nn = f[:, None] * nn + i[:, None] * k
            den = np.maximum(np.abs(np.sum(q * nn, 1)), 1.0)
            o = _sig(g["weight_o"] @ x + g["bias_o"]) if g["weight_o"] is not None else 1.0
            hs.append(o * (np.einsum("ka,kab->kb", q, C) / den[:, None]).reshape(-1))
    return np.array(hs)


@pytest.mark.parametrize(
    "name,opts",
    [
        ("slstm", dict(num_heads=2)),
        ("slstm", dict(forget_gate="exp")),
        ("mlstm", dict(eps=0.0)),
        ("mlstm", dict(eps=0.0, forget_gate="exp")),
    ],
)
def test_stabiliser_cancels_in_h(name, opts):
    cell = build(name, 3, N, seed=6, **opts)
    xs = inputs(8, 3, seed=7)
    tr = gs.rollout(cell, jnp.asarray(xs))
    ref = (_slstm_unstabilised if name == "slstm" else _mlstm_unstabilised)(cell, xs)
    np.testing.assert_allclose(np.asarray(tr["h"][1:]), ref, rtol=1e-10, atol=1e-12)
    assert np.any(np.abs(np.asarray(tr["m"][1:])) > 1e-3)  # the stabiliser was at work
    # with input-gate pre-activations near 800, exp(ĩ) overflows float64; the stabilised cell does not
    big = (
        dataclasses.replace(cell, bias=cell.bias.at[:N].set(800.0))
        if name == "slstm"
        else dataclasses.replace(cell, bias_i=cell.bias_i + 800.0)
    )
    assert not np.all(np.isfinite((_slstm_unstabilised if name == "slstm" else _mlstm_unstabilised)(big, xs)))
    assert bool(jnp.all(jnp.isfinite(gs.rollout(big, jnp.asarray(xs)).flat)))


# ------------------------------------------------------------------------ lag profiles and the engine
def _with_norm(cell, seed):
    rng = np.random.default_rng(seed)
    return dataclasses.replace(cell, norm_scale=jnp.asarray(1.0 + 0.3 * rng.normal(size=cell.hidden_size)))


def _models():
    out = {}
    for name, opts in (("slstm", dict(num_heads=2)), ("mlstm", {})):
        out[f"{name}"] = lambda name=name, opts=opts: build(name, 3, 4, seed=1, **opts)
        out[f"{name}-stack"] = lambda name=name, opts=opts: Stack(
            (_with_norm(build(name, 3, 4, seed=2, **opts), 0), build(name, 4, 4, seed=3, **opts))
        )
        out[f"{name}-bidirectional"] = lambda name=name, opts=opts: Bidirectional(
            build(name, 3, 4, seed=4, **opts), build(name, 3, 2, seed=5, **opts)
        )
    return out


MODELS = _models()
# compile-bound (tens of seconds on one core): the networks and the engine's other products run as `slow`
_SLOW = pytest.mark.slow


@pytest.mark.parametrize("name", [n if "-" not in n else pytest.param(n, marks=_SLOW) for n in sorted(MODELS)])
def test_lag_profile_matches_jacrev_norms(name):
    model = MODELS[name]()
    T = 6
    xs = inputs(T, model.input_size, seed=2)
    # exact SVDs: the mLSTM's top singular values nearly coincide across heads (f′·I per head), where the
    # default subspace iteration may sit ~1e-4 log10 low (documented in `engine.lag_profile`)
    lp = engine.lag_profile(model, xs, spectral="exact")
    _, _, P, _, _ = oracle(model, xs)
    ranges = block_ranges(model)
    pairs = [(f"{b}→{a}", ra, rb, ca, cb) for a, ra, rb in ranges for b, ca, cb in ranges]
    if len(ranges) > 4:
        pairs = [(f"{a}→{a}", r0, r1, r0, r1) for a, r0, r1 in ranges]
    for k in range(T):
        M = P[T, k]
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(M, 2)), atol=1e-10)
        np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(M)), atol=1e-10)
        for key, r0, r1, c0, c1 in pairs:
            with np.errstate(divide="ignore"):  # zero blocks (the h columns of the mLSTM): −inf on both sides
                want = np.log10(np.linalg.norm(M[r0:r1, c0:c1]))
            np.testing.assert_allclose(
                float(lp.blocks[key]["log10_frobenius"][k]), want, atol=1e-10, err_msg=f"{key} k={k}"
            )


@_SLOW
@pytest.mark.parametrize("name", ["slstm", "mlstm"])
def test_lyapunov_triangle_attribution_run_and_are_finite(name):
    model = MODELS[name]()
    xs = inputs(8, model.input_size, seed=3)
    # the products are rank-deficient by structure: the mLSTM's h columns are zero (h_t does not read
    # h_{t-1}); the zero initial state's m does not reach S_1 (c_0 = n_0 = 0, the sLSTM resets m_1 = ĩ_1);
    # a step that takes the stabiliser's input branch drops m_{t-1} from m_t. Those exponents are −inf;
    # the leading ones are finite, and none is NaN.
    ex = np.asarray(engine.lyapunov_spectrum(model, xs).exponents)
    assert not np.any(np.isnan(ex)) and np.all(np.isfinite(ex[:4])) and np.all(np.diff(ex[np.isfinite(ex)]) <= 1e-12)
    tri = np.asarray(engine.triangle(model, xs).log10_frobenius)
    assert np.all(np.isfinite(tri[np.tril_indices(tri.shape[0])]))
    at = engine.attribution(model, xs)
    assert np.all(np.isfinite(np.asarray(at.log10_by_lag))) and np.isfinite(float(at.log10_total))
    # ∂E/∂h_t, t ≥ 1: E reads h at every step (other blocks are 0 at t = T, where E reads h only)
    assert np.all(np.isfinite(np.asarray(at.log10_block_time)[1:, 0]))


# ---------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "name,opts,word",
    [
        ("slstm", dict(num_heads=3), "num_heads"),
        ("slstm", dict(forget_gate="tanh"), "forget_gate"),
        ("slstm", dict(forget_bias="x"), "forget_bias"),
        ("mlstm", dict(num_heads=3), "num_heads"),
        ("mlstm", dict(head_dim=3), "head_dim"),
        ("mlstm", dict(num_heads=1, head_dim=2), "num_heads"),
        ("mlstm", dict(output_gate=1), "output_gate"),
        ("mlstm", dict(eps=-1.0), "eps"),
    ],
)
def test_bad_options_raise_config_errors_naming_them(name, opts, word):
    with pytest.raises(ConfigError, match=word):
        gs.cells.make(name, 3, 4, key=jax.random.key(0), **opts)


def _shape_only(name, n, **opts):  # the cell's structure without running its initialisers
    return jax.eval_shape(lambda k: gs.cells.make(name, 3, n, key=k, **opts), jax.random.key(0))


def test_head_options_set_the_state_sizes():
    c = _shape_only("mlstm", 8, head_dim=4)
    assert (c.num_heads, c.block_sizes, c.weight_i.shape) == (2, (8, 32, 8, 2), (2, 3))
    assert _shape_only("mlstm", 6).block_sizes == (6, 12, 6, 3)  # Dh = 2 by default
    assert _shape_only("mlstm", 6, output_gate=False).weight_o is None
    c = _shape_only("slstm", 6, num_heads=3)
    assert c.block_sizes == (6,) * 4 and c.weight_hh.shape == (4, 3, 2, 2)


# ---------------------------------------------------------------------------------------- import
def test_recognise_and_prefixes():
    for ref in (_torch_slstm(), _torch_slstm_layer(), _torch_slstm_layer(conv=4), _torch_mlstm()):
        assert xio.recognise(set(ref.state_dict()))
    assert not xio.recognise(set(torch.nn.LSTM(3, 4).state_dict()))
    assert not xio.recognise({"igate.weight", "fgate.weight"})
    # a layer's own cell is not a second module; a prefixed copy is found with its prefix
    assert xio.modules(_torch_slstm_layer().state_dict()) == {"": "slstm-layer"}
    sd = {f"blocks.1.xlstm.{k}": v for k, v in _torch_mlstm().state_dict().items()}
    sd.update({f"blocks.0.xlstm.{k}": v for k, v in _torch_slstm_layer().state_dict().items()})
    assert xio.modules(sd) == {"blocks.1.xlstm.": "mlstm-cell", "blocks.0.xlstm.": "slstm-layer"}
    with pytest.raises(GradscopeError, match="prefix="):
        xio.from_state_dict(sd)
    assert isinstance(xio.from_state_dict(sd, prefix="blocks.1.xlstm."), MLSTM)


def test_layers_with_a_conv_window_are_refused_with_the_way_out():
    with pytest.raises(GradscopeError, match=r"conv1d\.conv\.weight.*slstm_cell\."):
        xio.from_state_dict(_torch_slstm_layer(conv=4).state_dict())
    # the layer's cell alone imports
    sd = {
        k[len("slstm_cell.") :]: v
        for k, v in _torch_slstm_layer(conv=4).state_dict().items()
        if k.startswith("slstm_cell.")
    }
    assert isinstance(xio.from_state_dict(sd), SLSTM)
    mlayer = {f"mlstm_cell.{k}": v for k, v in _torch_mlstm().state_dict().items()}
    mlayer.update({"proj_up.weight": np.zeros((8, 4)), "conv1d.conv.weight": np.zeros((4, 1, 4))})
    with pytest.raises(GradscopeError, match=r"conv1d\.conv\.weight.*mlstm_cell\."):
        xio.from_state_dict(mlayer)


@pytest.mark.parametrize("which", ["slstm", "slstm-layer", "mlstm"])
def test_import_errors_name_the_tensor(which):
    ref = {"slstm": _torch_slstm, "slstm-layer": _torch_slstm_layer, "mlstm": _torch_mlstm}[which]()
    good = {k: _np(v) for k, v in ref.state_dict().items()}
    victim = {"slstm": "_bias_", "slstm-layer": "zgate.weight", "mlstm": "fgate.bias"}[which]
    missing = {k: v for k, v in good.items() if k != victim}
    with pytest.raises(GradscopeError, match=f"missing tensor '{victim}'"):
        xio.from_state_dict(missing)
    shape = dict(good, **{victim: good[victim][..., :-1]})
    with pytest.raises(GradscopeError, match=f"'{victim}' has shape"):
        xio.from_state_dict(shape)
    nan = dict(
        good, **{victim: np.where(np.arange(good[victim].size).reshape(good[victim].shape) == 0, np.nan, good[victim])}
    )
    with pytest.raises(GradscopeError, match=f"'{victim}' has 1 NaN"):
        xio.from_state_dict(nan)
    rk = "slstm_cell._recurrent_kernel_" if which == "slstm-layer" else "_recurrent_kernel_"
    if which != "mlstm":
        with pytest.raises(GradscopeError, match=f"'{rk}' has shape"):
            xio.from_state_dict(dict(good, **{rk: good[rk][:, :-1]}))
