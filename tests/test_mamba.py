"""Mamba (S6) and Mamba-2 SSM cores: parity with Hugging Face transformers' ``MambaMixer`` /
``Mamba2Mixer`` (pure-PyTorch path, tiny random configs built here, no downloads), the importer
`gradscope.io.mamba`, and the engine on the cells (lag profiles against jax.jacrev, closed forms).

Reference computations used as truth:
* the SSM input u_t from the reference's own submodules (in_proj, its causal conv1d function, SiLU);
* states and y from the reference's own scan functions (``mamba_selective_scan``, ``mamba2_chunk_scan``)
  and the whole mixer's forward; these cast parts of the arithmetic to float32 (``A_log.float()``,
  ``hidden_states.float()``), hence the 1e-6 tolerances; a float64 NumPy transcription of the
  reference's slow loop gives the 1e-12 check;
* one-step Jacobians by ``torch.func`` autodiff of the reference's own single-token update
  (``mamba_selective_state_update``: jacrev; ``mamba2_selective_state_update``: jacfwd, since it writes
  the new state in place into a tensor its product saved for reverse mode).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradscope as gs
from gradscope import engine
from gradscope._errors import ConfigError, GradscopeError
from gradscope.cells.mamba import Mamba, Mamba2
from gradscope.io import mamba as io_mamba
from gradscope.io.formats import ImportFormatError
from gradscope.nets import Stack, bidirectional, stack
from tests._engine_ref import block_ranges, build, inputs, oracle

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from transformers.models.mamba import modeling_mamba as hf1  # noqa: E402
from transformers.models.mamba2 import modeling_mamba2 as hf2  # noqa: E402

T = 7
ATOL = 1e-10
TOL32 = dict(rtol=1e-5, atol=1e-6)  # the reference casts A, D and (Mamba-2) the inputs to float32


def _t(a):
    return torch.as_tensor(np.asarray(a, np.float64))


def _sd(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------ reference modules
def mamba_mixer(seed=0, layers=1):
    """A MambaMixer (hidden 4 → D = 8 channels, N = 4, R = 2, conv K = 3), float64, moved off its
    structured init (A_log = log(1..N), D = 1) so that nothing is accidentally symmetric."""
    torch.manual_seed(seed)
    cfg = transformers.MambaConfig(
        hidden_size=4,
        state_size=4,
        expand=2,
        conv_kernel=3,
        time_step_rank=2,
        num_hidden_layers=layers,
        vocab_size=8,
        time_step_min=0.05,
        time_step_max=0.5,
    )
    mix = hf1.MambaMixer(cfg, 0).double().eval()
    with torch.no_grad():
        mix.A_log.add_(0.3 * torch.randn_like(mix.A_log))
        mix.D.add_(0.5 * torch.randn_like(mix.D))
        mix.dt_proj.bias.add_(0.5 * torch.randn_like(mix.dt_proj.bias))
    return mix


def mamba2_mixer(seed=0, limit=(0.0, float("inf"))):
    """A Mamba2Mixer: hidden 4, H = 4 heads of P = 2 (I = 8), G = 2 groups of N = 3, K = 3, chunk 4."""
    torch.manual_seed(seed)
    cfg = transformers.Mamba2Config(
        hidden_size=4,
        state_size=3,
        num_heads=4,
        head_dim=2,
        n_groups=2,
        expand=2,
        conv_kernel=3,
        chunk_size=4,
        num_hidden_layers=1,
        vocab_size=8,
        time_step_limit=limit,
    )
    mix = hf2.Mamba2Mixer(cfg, 0).double().eval()
    with torch.no_grad():
        mix.A_log.add_(0.3 * torch.randn_like(mix.A_log))
        mix.D.add_(0.5 * torch.randn_like(mix.D))
        dt = torch.tensor([0.05, 0.6, 0.15, 1.0], dtype=torch.float64)  # some heads above a limit of 0.3
        mix.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        mix.norm.weight.add_(0.3 * torch.randn_like(mix.norm.weight))
    return mix


def hidden(seed=1, B=1):
    torch.manual_seed(seed)
    return torch.randn(B, T, 4, dtype=torch.float64)


def hf1_u(mix, hs):
    """(u (1, D, T), gate (1, D, T)) exactly as MambaMixer.forward computes them."""
    proj = mix.in_proj(hs).transpose(1, 2)
    x, gate = proj.chunk(2, dim=1)
    u = hf1.causal_conv1d_fn(x, mix.conv1d.weight.squeeze(1), mix.conv1d.bias, activation=mix.activation)
    return u, gate


def hf1_scan(mix, u):
    """(y (1, D, t), last state (1, D, N)) by the reference's mamba_selective_scan, as in forward."""
    R, N = mix.time_step_rank, mix.ssm_state_size
    ts, B, C = torch.split(mix.x_proj(u.transpose(1, 2)), [R, N, N], dim=-1)
    dt = mix.dt_proj.weight @ ts.transpose(1, 2)
    A = -torch.exp(mix.A_log.float())
    return hf1.mamba_selective_scan(
        u,
        dt,
        A,
        B.transpose(1, 2),
        C.transpose(1, 2),
        D=mix.D.float(),
        z=None,
        delta_bias=mix.dt_proj.bias.float(),
        delta_softplus=True,
        return_last_state=True,
    )


def hf2_u(mix, hs):
    """(u = [x, B, C, dt] (1, T, conv_dim + H), gate (1, T, I)) as Mamba2Mixer.forward computes them."""
    gate, xbc, dt = mix.in_proj(hs).split([mix.intermediate_size, mix.conv_dim, mix.num_heads], dim=-1)
    xbc = hf2.causal_conv1d_fn(
        xbc.transpose(1, 2), mix.conv1d.weight.squeeze(1), mix.conv1d.bias, activation=mix.activation
    ).transpose(1, 2)
    return torch.cat([xbc, dt], dim=-1), gate


def hf2_scan(mix, u):
    """(y (1, t, H, P), last state (1, H, P, N)) by the reference's mamba2_chunk_scan, as in forward."""
    H, P, G, N = mix.num_heads, mix.head_dim, mix.n_groups, mix.ssm_state_size
    b, t = u.shape[:2]
    x, B, C, dt = torch.split(u, [H * P, G * N, G * N, H], dim=-1)
    return hf2.mamba2_chunk_scan(
        x.reshape(b, t, H, P),
        dt,
        -torch.exp(mix.A_log.float()),
        B.reshape(b, t, G, N),
        C.reshape(b, t, G, N),
        chunk_size=mix.chunk_size,
        D=mix.D,
        dt_bias=mix.dt_bias,
        dt_softplus=True,
        dt_limit=mix.time_step_limit,
        return_final_states=True,
    )


def numpy_slow_loop(sd, u):
    """Float64 NumPy transcription of MambaMixer's slow path (mamba_selective_scan's recurrent branch)
    on u (T, D): returns states (T, D, N) and y (T, D)."""
    A = -np.exp(sd["A_log"])
    Dn, N = A.shape
    R = sd["dt_proj.weight"].shape[1]
    p = u @ sd["x_proj.weight"].T
    dt = np.logaddexp(0.0, p[:, :R] @ sd["dt_proj.weight"].T + sd["dt_proj.bias"])
    dA = np.exp(A[None] * dt[:, :, None])
    dBu = dt[:, :, None] * p[:, None, R : R + N] * u[:, :, None]
    h, hs, ys = np.zeros((Dn, N)), [], []
    for t in range(u.shape[0]):
        h = dA[t] * h + dBu[t]
        hs.append(h)
        ys.append(h @ p[t, R + N :] + sd["D"] * u[t])
    return np.stack(hs), np.stack(ys)


def trajectory(cell, us):
    """States h_1..h_T and readouts y_1..y_T of the gradscope cell on us (T, m)."""
    tr = gs.rollout(cell, jnp.asarray(us))
    hs = np.asarray(tr.flat[1:])
    ys = np.stack([np.asarray(cell.readout((jnp.asarray(h),), jnp.asarray(x))) for h, x in zip(hs, us)])
    return hs, ys


# ------------------------------------------------------------------------------ parity: Mamba
def test_mamba_states_outputs_and_mixer_match_transformers():
    mix = mamba_mixer()
    cell = io_mamba.from_state_dict(_sd(mix))
    assert isinstance(cell, Mamba) and (cell.input_size, cell.hidden_size, cell.dt_rank) == (8, 4, 2)
    hs = hidden()
    with torch.no_grad():
        u, gate = hf1_u(mix, hs)
        ref = [hf1_scan(mix, u[..., :t]) for t in range(1, T + 1)]
        out_ref = mix(hs)
    us = u[0].T.numpy()
    H, Y = trajectory(cell, us)
    for t, (y_t, h_t) in enumerate(ref):
        np.testing.assert_allclose(H[t], h_t[0].numpy().reshape(-1), **TOL32)  # flat order h[d·N + n]
    np.testing.assert_allclose(Y, ref[-1][0][0].numpy().T, **TOL32)
    # float64: the reference's slow loop transcribed in NumPy
    Hn, Yn = numpy_slow_loop(_sd(mix), us)
    np.testing.assert_allclose(H, Hn.reshape(T, -1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(Y, Yn, rtol=0, atol=1e-12)
    # the whole mixer = out_proj(y ⊙ SiLU(gate)): conv and gate are the input and output maps of the core
    with torch.no_grad():
        out = mix.out_proj(_t(Y) * torch.nn.functional.silu(gate[0].T))
    np.testing.assert_allclose(out.numpy(), out_ref[0].numpy(), **TOL32)
    # ssm_inputs reproduces the reference's u and gate in float64
    u2, z2 = io_mamba.ssm_inputs(_sd(mix), hs[0].numpy())
    np.testing.assert_allclose(u2, us, rtol=0, atol=1e-12)
    np.testing.assert_allclose(z2, gate[0].T.numpy(), rtol=0, atol=1e-12)


def test_mamba_jacobian_matches_jacrev_of_the_reference_step():
    mix = mamba_mixer(seed=3)
    cell = io_mamba.from_state_dict(_sd(mix))
    Dn, N, R = 8, 4, 2
    rng = np.random.default_rng(0)
    h0, u0 = rng.normal(size=Dn * N), rng.normal(size=Dn)
    A = -torch.exp(mix.A_log.float())

    def step(h, u):  # MambaMixer.forward's single-token branch, on one example
        state = h.reshape(1, Dn, N).clone()
        ts, B, C = torch.split(mix.x_proj(u[None]), [R, N, N], dim=-1)
        dt = (mix.dt_proj.weight @ ts.T).T
        y = hf1.mamba_selective_state_update(
            state, u[None], dt, A, B, C, mix.D, z=None, dt_bias=mix.dt_proj.bias.float(), dt_softplus=True
        )
        return state.reshape(-1), y[0]

    (Jh, Ju), (Yh, Yu) = torch.func.jacrev(step, argnums=(0, 1))(_t(h0), _t(u0))
    J, X = cell.jacobian(jnp.asarray(u0), (jnp.asarray(h0),))
    np.testing.assert_allclose(J, Jh.detach().numpy(), **TOL32)
    np.testing.assert_allclose(X, Ju.detach().numpy(), **TOL32)
    diag, X2 = cell.jacobian_diag(jnp.asarray(u0), (jnp.asarray(h0),))
    np.testing.assert_array_equal(jnp.diag(diag), J)
    # y_t = readout(h_t, u_t): chained through the new state, the readout Jacobian gives the reference's ∂y
    (h1,), _ = cell(jnp.asarray(u0), (jnp.asarray(h0),))
    Ry, Ru = cell.readout_jacobian((h1,), jnp.asarray(u0))
    np.testing.assert_allclose(Ry @ J, Yh.detach().numpy(), **TOL32)
    np.testing.assert_allclose(Ry @ X + Ru, Yu.detach().numpy(), **TOL32)


# ------------------------------------------------------------------------------ parity: Mamba-2
@pytest.mark.parametrize("limit", [(0.0, float("inf")), (0.0, 0.3)])
def test_mamba2_states_outputs_and_mixer_match_transformers(limit):
    mix = mamba2_mixer(limit=limit)
    cell = io_mamba.from_state_dict(_sd(mix), config=mix_config(mix))
    assert isinstance(cell, Mamba2)
    assert (cell.num_heads, cell.head_dim, cell.n_groups, cell.hidden_size, cell.input_size) == (4, 2, 2, 3, 24)
    hs = hidden(2)
    with torch.no_grad():
        u, gate = hf2_u(mix, hs)
        ref = [hf2_scan(mix, u[:, :t]) for t in range(1, T + 1)]
        out_ref = mix(hs)
    us = u[0].numpy()
    H, Y = trajectory(cell, us)
    for t, (_, h_t) in enumerate(ref):
        np.testing.assert_allclose(H[t], h_t[0].numpy().reshape(-1), **TOL32)  # flat order h[(h·P + p)·N + n]
    np.testing.assert_allclose(Y, ref[-1][0][0].numpy().reshape(T, -1), **TOL32)
    with torch.no_grad():  # the mixer = out_proj(gated RMSNorm(y, gate)): norm and gate outside the recurrence
        out = mix.out_proj(mix.norm(_t(Y)[None], gate))
    np.testing.assert_allclose(out[0].numpy(), out_ref[0].numpy(), **TOL32)
    u2, z2 = io_mamba.ssm_inputs(_sd(mix), hs.numpy())
    np.testing.assert_allclose(u2[0], us, rtol=0, atol=1e-12)
    np.testing.assert_allclose(z2[0], gate[0].numpy(), rtol=0, atol=1e-12)


def mix_config(mix):
    return {"n_groups": mix.n_groups, "state_size": mix.ssm_state_size, "time_step_limit": mix.time_step_limit}


def test_mamba2_jacobian_matches_jacrev_of_the_reference_step():
    # the reference's single-token update does not clip Δ (only its chunked scan does): no limit here
    mix = mamba2_mixer(seed=4)
    cell = io_mamba.from_state_dict(_sd(mix), n_groups=2)
    H, P, G, N = 4, 2, 2, 3
    rng = np.random.default_rng(1)
    h0, u0 = rng.normal(size=H * P * N), rng.normal(size=H * P + 2 * G * N + H)
    A = -torch.exp(mix.A_log.float())[:, None, None].expand(-1, P, N)

    # forward mode: the update writes the new state into `state` in place after reading it, which
    # reverse mode refuses (the product state·dA saved `state` for its backward)
    def step(h, u):  # Mamba2Mixer.forward's single-token branch, on one example
        state = h.reshape(1, H, P, N).clone()
        x, B, C, dt = torch.split(u[None], [H * P, G * N, G * N, H], dim=-1)
        y = hf2.mamba2_selective_state_update(
            state,
            x.reshape(1, H, P),
            dt[:, :, None].expand(-1, -1, P),
            A,
            B.reshape(1, G, N),
            C.reshape(1, G, N),
            mix.D[:, None].expand(-1, P),
            z=None,
            dt_bias=mix.dt_bias[:, None].expand(-1, P),
            dt_softplus=True,
        )
        return state.reshape(-1), y.reshape(-1)

    (Jh, Ju), (Yh, Yu) = torch.func.jacfwd(step, argnums=(0, 1))(_t(h0), _t(u0))
    J, X = cell.jacobian(jnp.asarray(u0), (jnp.asarray(h0),))
    np.testing.assert_allclose(J, Jh.detach().numpy(), **TOL32)
    np.testing.assert_allclose(X, Ju.detach().numpy(), **TOL32)
    (h1,), _ = cell(jnp.asarray(u0), (jnp.asarray(h0),))
    Ry, Ru = cell.readout_jacobian((h1,), jnp.asarray(u0))
    np.testing.assert_allclose(Ry @ J, Yh.detach().numpy(), **TOL32)
    np.testing.assert_allclose(Ry @ X + Ru, Yu.detach().numpy(), **TOL32)


# ------------------------------------------------------------------------------ importer
def test_recognise():
    assert io_mamba.recognise(set(_sd(mamba_mixer())))
    assert io_mamba.recognise(set(_sd(mamba2_mixer())))
    assert io_mamba.recognise({"backbone.layers.0.mixer." + k for k in _sd(mamba_mixer())})
    assert not io_mamba.recognise(set(torch.nn.LSTM(3, 4).state_dict()))
    assert not io_mamba.recognise({"A_log", "D"})


def test_multi_layer_model_becomes_a_stack_and_layers_match_the_model():
    torch.manual_seed(5)
    cfg = transformers.MambaConfig(
        hidden_size=4, state_size=3, expand=2, conv_kernel=3, time_step_rank=2, num_hidden_layers=2, vocab_size=8
    )
    model = transformers.MambaModel(cfg).double().eval()
    sd = {"backbone." + k: v for k, v in _sd(model).items()}
    net = io_mamba.from_state_dict(sd)
    assert isinstance(net, Stack) and len(net.layers) == 2
    assert net.blocks == ("layer0.h", "layer1.h")
    hs = hidden(6)
    with torch.no_grad():
        x1 = model.layers[0](hs)  # the residual stream entering layer 1
        normed = model.layers[1].norm(x1)
        u, _ = hf1_u(model.layers[1].mixer, normed)
        y_ref, h_ref = hf1_scan(model.layers[1].mixer, u)
    cell = io_mamba.from_state_dict(sd, layer=1)
    np.testing.assert_array_equal(cell.A_log, net.layers[1].A_log)
    us, _ = io_mamba.ssm_inputs(sd, normed[0].numpy(), layer=1)  # layer 1 analysed on its own inputs
    H, Y = trajectory(cell, us)
    np.testing.assert_allclose(H[-1], h_ref[0].numpy().reshape(-1), **TOL32)
    np.testing.assert_allclose(Y, y_ref[0].numpy().T, **TOL32)


def test_mamba2_needs_the_group_count_and_a_layer():
    sd = _sd(mamba2_mixer())
    with pytest.raises(ImportFormatError, match="n_groups"):
        io_mamba.from_state_dict(sd)
    with pytest.raises(ImportFormatError, match="do not fit"):
        io_mamba.from_state_dict(sd, n_groups=3)
    two = {f"layers.{i}.mixer.{k}": v for i in range(2) for k, v in sd.items()}
    with pytest.raises(ImportFormatError, match="layer="):
        io_mamba.from_state_dict(two, n_groups=2)
    assert io_mamba.from_state_dict(two, n_groups=2, layer=1).num_heads == 4


CORRUPTIONS = [
    ("mamba", "missing", "x_proj.weight"),
    ("mamba", "shape", "D"),
    ("mamba", "nan", "dt_proj.bias"),
    ("mamba", "missing", "A_log"),
    ("mamba2", "missing", "dt_bias"),
    ("mamba2", "shape", "D"),
    ("mamba2", "nan", "A_log"),
    ("mamba2", "nan", "conv1d.weight"),
]


@pytest.mark.parametrize("kind,how,name", CORRUPTIONS)
def test_bad_state_dict_names_the_tensor(kind, how, name):
    sd = _sd(mamba_mixer() if kind == "mamba" else mamba2_mixer())
    if how == "missing":
        del sd[name]
    elif how == "shape":
        sd[name] = np.concatenate([sd[name], sd[name][:1]])
    else:
        sd[name] = sd[name].copy()
        sd[name].flat[0] = np.nan
    with pytest.raises(GradscopeError, match=name.replace(".", r"\.")):
        io_mamba.from_state_dict(sd, n_groups=2)


# ------------------------------------------------------------------------------ builders
def test_registry_init_follows_the_reference():
    cell = gs.cells.make("mamba", 40, 5, key=jax.random.key(0), dtype=jnp.float64, dt_min=0.01, dt_max=0.2)
    assert cell.dt_rank == math.ceil(40 / 32) and cell.output_size == 40 and cell.state_size == 200
    np.testing.assert_allclose(cell.A_log, np.log(np.tile(np.arange(1, 6), (40, 1))), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(cell.D, 1.0)
    dt = np.logaddexp(0.0, np.asarray(cell.dt_proj_bias))  # softplus(bias) is the initial Δ
    assert np.all(dt >= 0.01 - 1e-12) and np.all(dt <= 0.2 + 1e-12)
    assert np.all(np.abs(cell.dt_proj_weight) <= 1 / math.sqrt(cell.dt_rank))
    c2 = gs.cells.make("mamba2", 6, 3, key=jax.random.key(0), dtype=jnp.float64, heads=3)
    assert (c2.num_heads, c2.head_dim, c2.output_size, c2.state_size) == (3, 2, 6, 18)
    np.testing.assert_allclose(c2.A_log, np.log([1.0, 2.0, 3.0]), rtol=0, atol=1e-15)
    assert c2.in_proj_weight.shape == (6 + 2 * 3 + 3, 6)


@pytest.mark.parametrize(
    "name,opts,word",
    [
        ("mamba", {"dt_rank": 0}, "dt_rank"),
        ("mamba", {"dt_min": 0.5, "dt_max": 0.1}, "dt_min"),
        ("mamba", {"dt_init": "zeros"}, "dt_init"),
        ("mamba2", {"heads": 2}, "heads"),
        ("mamba2", {"heads": 3, "groups": 2}, "groups"),
        ("mamba2", {"time_step_limit": (0.2, 0.1)}, "time_step_limit"),
        ("mamba2", {"time_step_limit": (0.0, "inf-ish")}, r"time_step_limit\[1\]"),
        ("mamba2", {"time_step_limit": (-0.1, 1.0)}, r"time_step_limit\[0\]"),
        ("mamba2", {"time_step_limit": 0.1}, "time_step_limit"),
    ],
)
def test_bad_options_name_the_option(name, opts, word):
    with pytest.raises(ConfigError, match=word):
        gs.cells.make(name, 3, 4, key=jax.random.key(0), **opts)


# ------------------------------------------------------------------------------ engine on the cells
def _models():
    # 2 channels × 3 states: a Stack or Bidirectional has 12 state entries, under the engine's EXACT_MAX
    # (16), so its spectral norms are exact SVDs; wider ones use subspace iteration, which is documented
    # to sit up to ~1e-3 log10 low where the top singular values cluster, as Mamba's decays near 1 do
    out = {}
    for name in ("mamba", "mamba2"):
        out[name] = lambda name=name: build(name, 2, 3)
        out[f"stack-{name}"] = lambda name=name: stack(name, 2, 3, 2, key=jax.random.key(1), dtype=jnp.float64)
        out[f"bidir-{name}"] = lambda name=name: bidirectional(name, 2, 3, key=jax.random.key(2), dtype=jnp.float64)
    return out


MODELS = _models()


def _slow_if_net(names):
    return [pytest.param(n, marks=pytest.mark.slow) if "-" in n else n for n in names]


@pytest.mark.parametrize("name", _slow_if_net(sorted(MODELS)))
def test_lag_profile_matches_jacrev_norms(name):
    model = MODELS[name]()
    Tn = 6
    xs = inputs(Tn, model.input_size, seed=2)
    lp = engine.lag_profile(model, xs)
    _, _, P, _, _ = oracle(model, xs)
    rng = block_ranges(model)
    if model.structure == "diagonal" or len(rng) > 4:
        pairs = [(f"{a}→{a}", r0, r1, r0, r1) for a, r0, r1 in rng]
    else:
        pairs = [(f"{b}→{a}", ra, rb, ca, cb) for a, ra, rb in rng for b, ca, cb in rng]
    assert set(lp.blocks) == {p[0] for p in pairs}
    for k in range(Tn):
        M = P[Tn, k]
        np.testing.assert_allclose(float(lp.log10_spectral[k]), np.log10(np.linalg.norm(M, 2)), atol=ATOL)
        np.testing.assert_allclose(float(lp.log10_frobenius[k]), np.log10(np.linalg.norm(M)), atol=ATOL)
        for key, r0, r1, c0, c1 in pairs:
            sub = M[r0:r1, c0:c1]
            with np.errstate(divide="ignore"):
                want = np.log10(np.linalg.norm(sub, 2))
            np.testing.assert_allclose(float(lp.blocks[key]["log10_spectral"][k]), want, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("name", _slow_if_net(["mamba2", "stack-mamba"]))
def test_spectrum_triangle_attribution_are_finite(name):
    model = MODELS[name]()
    xs = inputs(5, model.input_size, seed=3, B=2)
    ly = engine.lyapunov_spectrum(model, xs)
    tri = engine.triangle(model, xs)
    at = engine.attribution(model, xs, key=jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(ly.exponents)))
    F = np.asarray(tri.log10_frobenius)  # NaN above the diagonal (k > t) by definition
    Tn = xs.shape[1]
    lower = np.tril(np.ones((Tn + 1, Tn + 1), bool))
    assert np.all(np.isfinite(F[:, lower])) and np.all(np.isnan(F[:, ~lower]))
    assert np.all(np.isfinite(np.asarray(at.log10_by_lag))) and np.all(np.isfinite(np.asarray(at.log10_total)))


@pytest.mark.parametrize("name", ["mamba", "mamba2"])
def test_constant_input_decay_closed_form(name):
    """Closed form. Δ_t is a function of u_t alone, so ∂h_T/∂h_k = diag(exp(Σ_{j=k+1..T} Δ_j ⊙ A)) exactly,
    whatever the state: log ‖∂h_T/∂h_k‖₂ = max_i Σ_j Δ_{j,i} A_i (i over the D·N entries; Mamba-2: A_i = A_h
    of the head). With a constant input u_t = u, Δ_j = Δ(u) for every j, so the lag profile is linear in the
    lag τ = T − k with slope max_i Δ_i A_i = the sum over steps of max_n(Δ_t A_n): log10‖·‖₂ = τ·max_i(Δ_i A_i)/ln 10,
    and log10‖·‖_F = log10 √(Σ_i exp(2τ Δ_i A_i)). The Lyapunov exponents are the Δ_i A_i themselves."""
    cell = build(name, 3, 4, seed=5)
    Tn = 6
    u = np.random.default_rng(7).normal(size=3)
    xs = np.tile(u, (Tn, 1))
    if name == "mamba":  # Δ and A from the parameters, in NumPy
        R = cell.dt_rank
        dt = np.logaddexp(
            0.0,
            np.asarray(cell.dt_proj_weight) @ (np.asarray(cell.x_proj_weight)[:R] @ u) + np.asarray(cell.dt_proj_bias),
        )
        rates = (dt[:, None] * -np.exp(np.asarray(cell.A_log))).reshape(-1)
    else:
        W = np.asarray(cell.in_proj_weight)
        dt = np.logaddexp(0.0, (W @ u)[-cell.num_heads :] + np.asarray(cell.dt_bias))
        rates = np.repeat(dt * -np.exp(np.asarray(cell.A_log)), cell.head_dim * cell.hidden_size)
    tau = np.arange(Tn, 0, -1)
    for state0 in (None, (jnp.asarray(np.random.default_rng(8).normal(size=cell.state_size)),)):
        lp = engine.lag_profile(cell, xs, state0)  # the same for any initial state
        np.testing.assert_allclose(lp.log10_spectral, tau * rates.max() / np.log(10), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            lp.log10_frobenius, [0.5 * np.log10(np.sum(np.exp(2 * t * rates))) for t in tau], rtol=0, atol=1e-12
        )
    ly = engine.lyapunov_spectrum(cell, xs)
    np.testing.assert_allclose(ly.exponents, np.sort(rates)[::-1], rtol=0, atol=1e-12)
