"""Import transformers' Mamba / Mamba-2 mixers (``MambaMixer``, ``Mamba2Mixer``; the ``mixer.*`` of
``MambaBlock``/``Mamba2Block``; ``[backbone.]layers.{i}.mixer.*`` of ``MambaModel``/``Mamba2Model`` and the
``*ForCausalLM`` heads) into the SSM cores `gradscope.cells.mamba.Mamba` / `Mamba2`.

Tensors read (names after the mixer prefix; D channels, N states, R = dt rank, H heads of P channels,
G groups, K = conv width, I = D = H·P)::

    Mamba    A_log (D, N)  D (D,)  x_proj.weight (R+2N, D)  dt_proj.weight (D, R)  dt_proj.bias (D,)
    Mamba-2  A_log (H,)  D (H,)  dt_bias (H,)  norm.weight (I,)  conv1d.weight (I+2GN, 1, K)
             in_proj.weight (I + (I+2GN) + H, d_model)

The state dict cannot tell G from N in Mamba-2 (only their product): pass ``n_groups=`` or ``state_size=``
(or ``config=``, a transformers config or its ``config.json`` dict, which also gives ``time_step_limit``).
The cell clips Δ to ``time_step_limit`` as transformers' chunked scan (``mamba2_chunk_scan``) does; note that
its one-token cached update (``mamba2_selective_state_update``) does not clip, so the two disagree in
transformers itself whenever the limit binds.

What comes back is the SSM core (see `gradscope.cells.mamba` for what that covers): in_proj, conv1d, the
SiLU gate, Mamba-2's gated RMSNorm and out_proj stay outside the recurrence. `ssm_inputs` computes, from a
mixer's tensors and its input sequence, the core's input u_t (in_proj → causal conv1d → SiLU, plus Mamba-2's
raw dt) and the gate z_t, so a trained layer is analysed exactly on its own inputs. A multi-layer Mamba
becomes a `gradscope.nets.Stack` of its cores (chained y_l → u_{l+1}, which is NOT the model's inter-layer
path: gate, out_proj, residual, RMSNorm, in_proj and conv sit in between); pass ``layer=i`` for one layer.
Mamba-2 cores cannot be chained (u is wider than y), so a multi-layer Mamba-2 needs ``layer=i``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from gradscope._errors import GradscopeError, check_clip_range
from gradscope.io._build import Importer, expect, resolve_dtype
from gradscope.io._plan import CellPlan, ModelPlan, stack
from gradscope.io.formats import ImportFormatError, check_float_array

_LAYER = re.compile(r"^(?P<stem>(?:.*\.)?layers\.)(?P<i>\d+)\.(?P<rest>.*)$")
KINDS = ("mamba", "mamba2")


def _mixer_prefixes(keys) -> dict[str, str]:
    """Mixer prefix -> kind, for every ``<prefix>A_log`` that has the tensors of one of the two mixers."""
    keys = set(keys)
    out = {}
    for k in keys:
        if not k.endswith("A_log") or not (k == "A_log" or k.endswith(".A_log")):
            continue
        p = k[: -len("A_log")]
        if p + "dt_bias" in keys:
            out[p] = "mamba2"
        elif any(p + n in keys for n in ("x_proj.weight", "dt_proj.weight", "dt_proj.bias")):
            out[p] = "mamba"
    return out


def recognise(keys) -> bool:
    """Do these tensor names come from a transformers Mamba or Mamba-2 mixer (or a model of them)?"""
    return bool(_mixer_prefixes(keys))


def _layers(prefixes) -> list[str]:
    """The prefixes in layer order when they are ``…layers.{i}.<rest>`` of one model, else sorted."""
    parsed = [m for p in prefixes if (m := _LAYER.match(p))]
    if parsed and len(parsed) == len(prefixes) and len({(m["stem"], m["rest"]) for m in parsed}) == 1:
        idx = sorted(int(m["i"]) for m in parsed)
        if idx != list(range(len(idx))):
            raise ImportFormatError(
                f"state dict: mixer layers {idx} are not numbered 0..{len(idx) - 1}; is a layer missing?"
            )
        m = parsed[0]
        return [f"{m['stem']}{i}.{m['rest']}" for i in idx]
    return sorted(prefixes)


def _hint(name, hints, config):
    if hints.get(name) is not None:
        return hints[name]
    if config is None:
        return None
    return config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)


def _shape(sd, key, want: tuple, source) -> tuple:
    """The shape of ``sd[key]`` after checking that it exists, is finite float and has ``len(want)`` axes
    (``want`` may hold names for the sizes not known yet); the sizes themselves are checked by `expect`."""
    if key not in sd:
        expect(sd, key, want, source)  # raises: missing tensor, naming it
    arr = sd[key]
    check_float_array(arr, key, source)
    if np.ndim(arr) != len(want):
        raise ImportFormatError(f"{source}: tensor {key!r} has shape {np.shape(arr)}, expected {want}")
    return np.shape(arr)


def _mamba(sd, p, source, dtype) -> CellPlan:
    Dn, N = _shape(sd, p + "A_log", ("D", "N"), source)
    R = _shape(sd, p + "dt_proj.weight", (Dn, "R"), source)[1]
    t = {
        n: expect(sd, p + n, s, source)
        for n, s in (
            ("A_log", (Dn, N)),
            ("D", (Dn,)),
            ("x_proj.weight", (R + 2 * N, Dn)),
            ("dt_proj.weight", (Dn, R)),
            ("dt_proj.bias", (Dn,)),
        )
    }
    dt = resolve_dtype(dtype, t.values())
    weights = {n.replace(".", "_"): v for n, v in t.items()}
    return CellPlan("mamba", "Mamba", {"input_size": Dn, "hidden_size": N, "dt_rank": R}, weights, dt)


def _mamba2(sd, p, source, dtype, hints) -> CellPlan:
    config = hints.get("config")
    (H,) = _shape(sd, p + "A_log", ("H",), source)
    (Dn,) = _shape(sd, p + "norm.weight", ("I",), source)
    if Dn % H:
        raise ImportFormatError(
            f"{source}: tensor {p + 'norm.weight'!r} has {Dn} channels, not a multiple of "
            f"the {H} heads of {p + 'A_log'!r}"
        )
    conv = _shape(sd, p + "conv1d.weight", ("I+2GN", 1, "K"), source)
    expect(sd, p + "conv1d.weight", (conv[0], 1, conv[2]), source)  # depthwise: one input channel per filter
    gn2 = conv[0] - Dn
    G, N = _hint("n_groups", hints, config), _hint("state_size", hints, config)
    if G is None and N is None:
        raise ImportFormatError(
            f"{source}: Mamba-2 tensors fix only n_groups·state_size = {gn2 // 2}; pass "
            f"n_groups= or state_size= (or config=, the model's config)"
        )
    G = int(G) if G is not None else gn2 // (2 * int(N or 1))
    N = int(N) if N is not None else gn2 // (2 * G)
    if G <= 0 or N <= 0 or 2 * G * N != gn2 or H % G:
        raise ImportFormatError(
            f"{source}: n_groups={G}, state_size={N} do not fit tensor "
            f"{p + 'conv1d.weight'!r} ({conv[0]} = {Dn} + 2·G·N rows) and {H} heads"
        )
    t = {n: expect(sd, p + n, (H,), source) for n in ("A_log", "D", "dt_bias")}
    dt = resolve_dtype(dtype, t.values())
    limit = _hint("time_step_limit", hints, config)
    try:  # the cell's own check (`gradscope.cells.mamba.build_mamba2`), JAX-free
        limit = check_clip_range("time_step_limit", limit)
    except GradscopeError as e:  # a ConfigError naming the hint; keep one error type for importers
        raise ImportFormatError(f"{source}: {e}") from None
    static = {
        "input_size": Dn + gn2 + H,
        "hidden_size": N,
        "num_heads": H,
        "head_dim": Dn // H,
        "n_groups": G,
        "time_step_limit": limit,
    }
    return CellPlan("mamba", "Mamba2", static, {**t, "in_proj_weight": None}, dt)


@Importer
def from_state_dict(
    sd: Mapping,
    *,
    prefix: str | None = None,
    layer: int | None = None,
    dtype=None,
    n_groups: int | None = None,
    state_size: int | None = None,
    time_step_limit=None,
    config=None,
    source: str = "state dict",
) -> ModelPlan:
    """The SSM core(s) of a transformers Mamba / Mamba-2 state dict (NumPy or torch tensors; ``from_state_dict.plan``:
    their plan).

    ``prefix`` picks one mixer (e.g. ``"backbone.layers.2.mixer."``), ``layer=i`` the i-th of a model's
    layers; otherwise one mixer gives its cell and several Mamba layers a `Stack` (see the module docstring).
    Raises `ImportFormatError` naming the tensor on a missing tensor, a wrong shape or NaN/inf.
    """
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in sd.items()}
    cands = _mixer_prefixes(sd)
    if not cands:
        raise ImportFormatError(
            f"{source}: no Mamba/Mamba-2 mixer found (no '<prefix>A_log' with "
            f"'x_proj.weight' or 'dt_bias'); keys are {sorted(sd)[:12]}"
        )
    if prefix is not None:
        if prefix not in cands:
            raise ImportFormatError(f"{source}: prefix={prefix!r} is not a mixer prefix; found {sorted(cands)}")
        chosen = [prefix]
    else:
        chosen = _layers(cands)
        if layer is not None:
            if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < len(chosen):
                raise ImportFormatError(
                    f"{source}: layer={layer!r} is not allowed: the model has "
                    f"{len(chosen)} mixer layer(s), 0..{len(chosen) - 1}"
                )
            chosen = [chosen[int(layer)]]
    hints = {"n_groups": n_groups, "state_size": state_size, "time_step_limit": time_step_limit, "config": config}
    cells = [
        _mamba(sd, p, source, dtype) if cands[p] == "mamba" else _mamba2(sd, p, source, dtype, hints) for p in chosen
    ]
    if len(cells) > 1 and any(cands[p] == "mamba2" for p in chosen):
        raise ImportFormatError(
            f"{source}: {len(cells)} Mamba-2 layers found; their SSM cores cannot be chained "
            f"in a Stack (u_t = [x, B, C, dt] is wider than y_t): pass layer=0..{len(cells) - 1}"
        )
    return stack(cells)


def _causal_conv_silu(z, w, b):
    """SiLU of the causal depthwise conv of z (T, C) with w (C, K), zero history: torch's conv1d with
    padding K−1 cropped to the first T outputs, out[t] = Σ_k w[:, k] z[t − (K−1) + k] + b."""
    T, K = z.shape[0], w.shape[1]
    zp = np.concatenate([np.zeros((K - 1, z.shape[1]), z.dtype), z], axis=0)
    out = sum(w[:, k] * zp[k : k + T] for k in range(K)) + (0.0 if b is None else b)
    return out / (1.0 + np.exp(-out))


def ssm_inputs(
    sd: Mapping, hidden_states, *, prefix: str | None = None, layer: int | None = None, source: str = "state dict"
):
    """``(u, z)`` of one mixer for its input sequence ``hidden_states`` ((T, d_model) or (B, T, d_model),
    the block's RMS-normed input), in float64 NumPy: u the SSM core's input (the cell's x), z the gate.

    Mamba: [x|z] = in_proj(h), u = SiLU(conv1d(x)). Mamba-2: [z|xBC|dt] = in_proj(h), u = [SiLU(conv1d(xBC)),
    dt]. The y of the core then leaves the mixer as out_proj(y ⊙ SiLU(z)) (Mamba) or out_proj(norm(y, z))
    (Mamba-2's gated RMSNorm), which the caller applies with the reference's own modules.
    """
    sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in sd.items()}
    cands = _mixer_prefixes(sd)
    if prefix is None:
        order = _layers(cands) if cands else []
        if layer is None and len(order) != 1:
            raise ImportFormatError(f"{source}: {len(order)} mixers found; pass prefix= or layer=")
        if layer is not None and not (isinstance(layer, (int, np.integer)) and 0 <= layer < len(order)):
            raise ImportFormatError(f"{source}: layer={layer!r} is not allowed: {len(order)} mixer layer(s)")
        prefix = order[layer or 0]
    elif prefix not in cands:
        raise ImportFormatError(f"{source}: prefix={prefix!r} is not a mixer prefix; found {sorted(cands)}")
    p = prefix
    h = np.asarray(hidden_states, np.float64)
    if h.ndim == 3:
        pairs = [ssm_inputs(sd, hb, prefix=p, source=source) for hb in h]
        return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])
    C, _, K = _shape(sd, p + "conv1d.weight", ("C", 1, "K"), source)
    if cands[p] == "mamba":
        Dn, rows = C, 2 * C
    else:  # z (I) | xBC (C) | dt (H)
        (Dn,) = _shape(sd, p + "norm.weight", ("I",), source)
        rows = Dn + C + _shape(sd, p + "A_log", ("H",), source)[0]
    W = expect(sd, p + "in_proj.weight", (rows, h.shape[-1]), source).astype(np.float64)
    proj = h @ W.T
    if p + "in_proj.bias" in sd:
        proj = proj + expect(sd, p + "in_proj.bias", (rows,), source)
    w = expect(sd, p + "conv1d.weight", (C, 1, K), source)[:, 0, :].astype(np.float64)
    cb = expect(sd, p + "conv1d.bias", (C,), source).astype(np.float64) if p + "conv1d.bias" in sd else None
    if cands[p] == "mamba":
        return _causal_conv_silu(proj[:, :C], w, cb), proj[:, C:]
    return np.concatenate([_causal_conv_silu(proj[:, Dn : Dn + C], w, cb), proj[:, Dn + C :]], -1), proj[:, :Dn]
