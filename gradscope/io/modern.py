"""Recognise the modern recurrences in a state dict or parameter tree by their tensor names, and import them
with their converters (`gradscope.io.mamba`, `.xlstm`, `.mingru`, `.lru`, `.rglru`).

Architectures (the name is what ``framework=`` / ``kind=`` / ``--framework`` take) and the tensor that marks
a module of each (after its prefix)::

    mamba    transformers MambaMixer (``A_log`` with ``x_proj.weight``) / Mamba2Mixer (``A_log`` with ``dt_bias``)
             — Gu & Dao 2023; Dao & Gu 2024
    xlstm    xlstm sLSTMCell (``_recurrent_kernel_``), sLSTMLayer, mLSTMCell (``outnorm.weight`` with
             ``igate.weight``, ``fgate.weight``) — Beck et al. 2024
    mingru   mingru-pytorch minGRU (``to_hidden_and_gate.weight``) / minLSTM (``to_hidden_and_f_i_gate.weight``)
             — Feng et al. 2024
    lru      lru-pytorch LRU or the paper's Flax layout (``nu_log``) — Orvieto et al. 2023
    rglru    recurrentgemma RG-LRU (``a_param`` with ``input_gate`` and ``a_gate``) — De et al. 2024

Rules: exactly one architecture must be found (several, or one next to a PyTorch ``nn.RNN/LSTM/GRU``, is
ambiguous: name it with ``framework=`` or narrow the keys with ``prefix=``); inside a recognised module every
tensor must be one the module has (an unknown one is an error, naming it); tensors outside the modules (a
Mamba model's embeddings and norms) are left out and listed by `describe`. What a state dict cannot say
(Mamba-2's ``n_groups``/``state_size``, RG-LRU's ``reset_at_start``) comes from the options, else from the
file's metadata or sidecar ``<file>.json``, else (Mamba) from a transformers ``config.json`` next to the file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gradscope.io import lru as _lru
from gradscope.io import mamba as _mamba
from gradscope.io import mingru as _mingru
from gradscope.io import rglru as _rglru
from gradscope.io import xlstm as _xlstm
from gradscope.io._arrays import ImportFormatError
from gradscope.io._build import Importer
from gradscope.io._plan import ModelPlan

_MAMBA_KNOWN = ("A_log", "D", "conv1d.weight", "conv1d.bias", "in_proj.weight", "in_proj.bias", "out_proj.weight")
_KNOWN: dict[str, tuple[str, ...] | None] = {
    "mamba": _MAMBA_KNOWN + ("x_proj.weight", "dt_proj.weight", "dt_proj.bias", "out_proj.bias"),
    "mamba2": _MAMBA_KNOWN + ("dt_bias", "norm.weight", "out_proj.bias"),
    "slstm-cell": ("_recurrent_kernel_", "_bias_"),
    "slstm-layer": (
        "fgate.weight",
        "igate.weight",
        "zgate.weight",
        "ogate.weight",
        "group_norm.weight",
        "slstm_cell._recurrent_kernel_",
        "slstm_cell._bias_",
        "conv1d.conv.weight",
        "conv1d.conv.bias",
    ),
    "mlstm-cell": ("igate.weight", "igate.bias", "fgate.weight", "fgate.bias", "outnorm.weight"),
    "mlstm-layer": None,  # refused by the converter with its reason
    "mingru": ("to_hidden_and_gate.weight", _mingru.OUT),
    "minlstm": ("to_hidden_and_f_i_gate.weight", _mingru.OUT),
    "lru": _lru.SUFFIXES,
    "rglru": tuple(sep.join(p) for p in _rglru.PARAMS.values() for sep in _rglru.SEPS) + ("a_imag_param",),
}
TITLES = {
    "mamba": "transformers MambaMixer (Mamba SSM core)",
    "mamba2": "transformers Mamba2Mixer (Mamba-2 SSM core)",
    "slstm-cell": "xlstm sLSTMCell",
    "slstm-layer": "xlstm sLSTMLayer",
    "mlstm-cell": "xlstm mLSTMCell",
    "mlstm-layer": "xlstm mLSTMLayer",
    "mingru": "mingru-pytorch minGRU",
    "minlstm": "mingru-pytorch minLSTM",
    "lru": "LRU (lru-pytorch, or the paper's Flax layout)",
    "rglru": "recurrentgemma RG-LRU",
}


def _mingru_modules(keys) -> dict[str, str]:
    out = {}
    for k in keys:
        parts = _mingru._split_key(k)
        if parts is not None and parts[1] in _mingru.GATES:
            out[parts[0]] = _mingru.GATES[parts[1]][0]
    return out


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one family is found (``modules(keys) -> {prefix: kind}``) and planned (``plan``, the ``.plan`` of its
    importer)."""

    name: str
    modules: Callable[[Any], dict[str, str]]
    plan: Callable[..., ModelPlan]
    options: tuple[str, ...]  # what the planner takes besides dtype and source
    flax: bool = False  # also a Flax/JAX parameter tree (`gradscope.io.from_flax`)


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "mamba",
            _mamba._mixer_prefixes,
            _mamba.from_state_dict.plan,
            ("prefix", "layer", "n_groups", "state_size", "time_step_limit", "config"),
        ),
        Architecture("xlstm", _xlstm.modules, _xlstm.from_state_dict.plan, ("prefix",)),
        Architecture("mingru", _mingru_modules, _mingru.from_state_dict.plan, ("prefix",)),
        Architecture(
            "lru",
            lambda keys: dict.fromkeys(_lru.layer_prefixes(keys), "lru"),
            _lru.from_state_dict.plan,
            ("prefix",),
            True,
        ),
        Architecture(
            "rglru",
            lambda keys: dict.fromkeys(_rglru.layer_prefixes(keys), "rglru"),
            _rglru.from_state_dict.plan,
            ("prefix", "reset_at_start"),
            True,
        ),
    )
}
#: the tensor names that mark each architecture, for messages about files that hold none of them
MARKERS = (
    "'A_log' (Mamba), '_recurrent_kernel_' or 'outnorm.weight' (xLSTM), 'to_hidden_and_gate.weight' or "
    "'to_hidden_and_f_i_gate.weight' (minGRU/minLSTM), 'nu_log' (LRU), 'a_param' (RG-LRU)"
)
#: option values read from metadata / sidecar when not passed (JSON-decoded)
_META_OPTIONS = ("n_groups", "state_size", "time_step_limit", "reset_at_start")


def _under(keys, prefix: str | None) -> list[str]:
    return [k for k in keys if prefix is None or k.startswith(prefix)]


def detect(keys, *, prefix: str | None = None, flax_only: bool = False) -> dict[str, dict[str, str]]:
    """``{architecture: {module prefix: kind}}`` for every architecture whose modules are among ``keys``
    (only those under ``prefix`` when given)."""
    keys = _under(keys, prefix)
    out = {}
    for name, arch in ARCHITECTURES.items():
        if flax_only and not arch.flax:
            continue
        found = arch.modules(keys)
        if found:
            out[name] = found
    return out


def ambiguous(found, source: str) -> ImportFormatError:
    listed = "; ".join(f"{name} at {sorted(mods) if isinstance(mods, dict) else mods}" for name, mods in found.items())
    return ImportFormatError(
        f"{source}: the tensor names match several layouts ({listed}): pass framework=NAME "
        "(CLI: --framework NAME) or prefix= to choose one"
    )


def choose(found: dict, architecture: str | None, source: str) -> str:
    """The one architecture to import: ``architecture`` if given (and found), else the only one found."""
    if architecture is not None:
        if architecture not in ARCHITECTURES:
            raise ImportFormatError(
                f"architecture {architecture!r} is not allowed: expected one of {', '.join(ARCHITECTURES)}"
            )
        if architecture not in found:
            raise ImportFormatError(
                f"{source}: no {architecture} tensors found; the names match {sorted(found) or 'no modern layout'}"
            )
        return architecture
    if not found:
        raise ImportFormatError(
            f"{source}: no Mamba, xLSTM, minGRU/minLSTM, LRU or RG-LRU tensors found (looked for {MARKERS})"
        )
    if len(found) > 1:
        raise ambiguous(found, source)
    return next(iter(found))


def _json_value(text):
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _hf_config(path) -> dict | None:
    """A transformers ``config.json`` next to a weight file, when it describes a Mamba model."""
    if not isinstance(path, (str, Path)):
        return None
    cfg = Path(path).parent / "config.json"
    try:
        if not cfg.is_file() or cfg.stat().st_size > 2**20:
            return None
        data = json.loads(cfg.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("model_type") in ("mamba", "mamba2") else None


def _check_known(arrays, modules: dict[str, str], chosen: list[str], source: str) -> None:
    """Every tensor under a chosen module's prefix is one that module has (or belongs to a module nested in it)."""
    for p in chosen:
        known = _KNOWN.get(modules[p])
        if known is None:
            continue
        nested = [q for q in modules if q != p and q.startswith(p)]
        for k in arrays:
            if k.startswith(p) and k[len(p) :] not in known and not any(k.startswith(q) for q in nested):
                raise ImportFormatError(
                    f"{source}: unexpected tensor {k!r} in the {TITLES[modules[p]]} at prefix {p!r} "
                    f"(it has {', '.join(known)})"
                )


def _chosen_prefixes(modules: dict[str, str], prefix: str | None) -> list[str]:
    if prefix is None:
        return list(modules)
    for cand in (prefix, prefix + ".", prefix + "/"):
        if cand in modules:
            return [cand]
    return []


@Importer
def import_arrays(
    arrays: Mapping,
    *,
    architecture: str | None = None,
    meta: Mapping | None = None,
    path=None,
    dtype=None,
    source: str = "state dict",
    **options,
) -> ModelPlan:
    """The gradscope model of the modern module(s) in ``arrays`` (see the module docstring for the rules;
    ``import_arrays.plan``: its plan)."""
    found = detect(arrays, prefix=options.get("prefix"))
    name = choose(found, architecture, source)
    arch = ARCHITECTURES[name]
    bad = sorted(set(options) - set(arch.options))
    if bad:
        raise ImportFormatError(
            f"option {bad[0]}= is not allowed for a {name} import: it takes {', '.join(arch.options)} and dtype"
        )
    for key in _META_OPTIONS:
        if key in arch.options and options.get(key) is None and (meta or {}).get(key) is not None:
            options[key] = _json_value((meta or {})[key])
    if name == "mamba" and all(options.get(k) is None for k in ("n_groups", "state_size", "config")):
        options["config"] = _hf_config(path)
    modules = arch.modules(list(arrays))
    _check_known(arrays, modules, _chosen_prefixes(modules, options.get("prefix")), source)
    return arch.plan(dict(arrays), dtype=dtype, source=source, **options)


def describe(arrays: Mapping, architecture: str, prefix: str | None = None) -> dict:
    """What `gradscope.io.inspect_file` adds for a modern model: the modules found, their kinds and the
    tensors left out (outside every module)."""
    modules = ARCHITECTURES[architecture].modules(list(arrays))
    used = _chosen_prefixes(modules, prefix) or list(modules)
    kinds = sorted({modules[p] for p in used})
    return {
        "architecture": ", ".join(TITLES[k] for k in kinds),
        "modules": {p: modules[p] for p in sorted(used)},
        "ignored_tensors": sorted(k for k in arrays if not any(k.startswith(p) for p in used)),
    }
