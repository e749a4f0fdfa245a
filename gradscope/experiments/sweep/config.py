"""A sweep configuration: one registry cell with options, a hidden size, an input source, a length T and
a seed; `grid` expands cells × gains × lengths × seeds, `analyse_config` analyses one configuration."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from gradscope._errors import ConfigError, GradscopeError, check_positive_int

if TYPE_CHECKING:
    import jax

    from gradscope.analysis import Analysis


@dataclass(frozen=True)
class Config:
    """One analysed configuration (plain data: it is also the identity of a line in the partial file)."""

    name: str
    cell: str
    options: dict = field(default_factory=dict)
    label: str = ""
    hidden: int = 32
    length: int = 200
    batch: int = 4
    seed: int = 0
    input: str = "uniform"
    input_size: int | None = 2
    dtype: str = "float32"
    layers: int = 1
    residual: bool = False
    threshold: float = -3.0
    mode: str = "exact"
    triangle: bool = False
    attribution: bool = False
    sensitivity: bool = False  # parameter sensitivity ∂S_t/∂θ (gradscope analyse --sensitivity)
    gain: float | None = None  # the swept gain (None: not applicable to this cell)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def build_model(cfg: Config, key: jax.Array) -> Any:
    """The registry cell (or a Stack of ``layers`` cells) of ``cfg`` with weights drawn from ``key``, built as
    every command builds its models (`gradscope.experiments.models.build_model`)."""
    from gradscope.experiments import inputs
    from gradscope.experiments.models import build_model as build

    m = cfg.input_size if cfg.input_size is not None else inputs.task_input_size(cfg.input, cfg.length)
    if m is None:  # a free input source (noise, uniform, zeros) and no input_size
        raise ConfigError("input_size=None is not allowed: expected a positive integer")
    try:
        return build(
            cfg.cell,
            cfg.options,
            input_size=m,
            hidden=cfg.hidden,
            length=cfg.length,
            key=key,
            layers=cfg.layers,
            residual=cfg.residual,
            dtype=cfg.dtype,
        )
    except GradscopeError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. a text value where the builder needs a number
        opts = ", ".join(f"{k}={v!r}" for k, v in cfg.options.items()) or "no options"
        raise ConfigError(f"cell {cfg.cell!r} cannot be built with {opts}: {exc}") from None


def plan_config(cfg: Config) -> None:
    """Refuse, in seconds and before any weights or inputs exist, a configuration that cannot run
    (`gradscope.experiments.plan.plan_config`: seed and size ranges, then the memory of its analysis)."""
    from gradscope.experiments.plan import plan_config as plan

    plan(cfg)


def config_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(model key, input key) from one seed: independent streams, the input one shared by all cells. The model
    key is `gradscope.experiments.models.model_key`, the one every command draws weights from."""
    from gradscope import _random

    k_model, k_input = _random.split_keys(_random.key(int(seed)))
    return k_model, k_input


def config_inputs(cfg: Config, input_key: jax.Array, m: int) -> jax.Array:
    """``cfg``'s input batch (B, T, m) for a model that takes inputs of size ``m``; a task source whose
    inputs have another size is a `ConfigError`."""
    from gradscope.experiments import inputs

    xs = inputs.make_inputs(
        cfg.input, input_key, cfg.batch, cfg.length, None if cfg.input in inputs.TASK_SOURCES else m, dtype=cfg.dtype
    )
    if xs.shape[-1] != m:
        raise ConfigError(
            f"input={cfg.input!r} gives inputs of size {xs.shape[-1]}, but the model takes {m}: "
            "choose input noise/uniform/zeros for this model"
        )
    return xs


def analyse_model(model: Any, cfg: Config, input_key: jax.Array) -> Analysis:
    """`gradscope.analyse` of ``model`` on ``cfg``'s inputs; returns the `Analysis`."""
    from gradscope.analysis import analyse

    return analyse(
        model,
        config_inputs(cfg, input_key, int(model.input_size)),
        name=cfg.name,
        mode=cfg.mode,
        threshold=cfg.threshold,
        triangle=cfg.triangle,
        attribution=cfg.attribution,
        sensitivity=cfg.sensitivity,
        key=input_key,
    )


def analyse_config(cfg: Config) -> Analysis:
    """Build and analyse one configuration; returns the `Analysis` (the raw, un-serialised record)."""
    k_model, k_input = config_keys(cfg.seed)
    return analyse_model(build_model(cfg, k_model), cfg, k_input)


def _fmt(v: float) -> str:
    return format(float(v), "g")


def grid(
    cells: Sequence[Any],
    gains: Sequence[float] | None,
    lengths: Sequence[int],
    seeds: Sequence[int],
    *,
    init: str | None = None,
    **common: Any,
) -> list[Config]:
    """The configurations of a sweep, in a fixed order (cell, gain, length, seed).

    ``cells``: registry names, or ``(label, name, options)`` triples. ``gains`` apply to cells that take a
    ``gain`` option (others are analysed once per length and seed with their own initialisation);
    ``init`` sets ``recurrent_init`` for cells that take it. ``common``: the other `Config` fields.
    """
    from gradscope.cells import options as cell_options
    from gradscope.experiments.models import command_options

    if not lengths or not seeds or not cells:
        raise ConfigError("a sweep needs at least one cell, one length and one seed")
    out = []
    for c in cells:
        label, name, opts = (c, c, {}) if isinstance(c, str) else c
        allowed = cell_options(name)
        opts = dict(opts)
        if init is not None and "recurrent_init" in allowed:
            opts.setdefault("recurrent_init", init)
        takes_gain = "gain" in allowed and bool(gains)
        if takes_gain and "gain" in opts:
            raise ConfigError(f"cell {label!r} sets gain={opts['gain']!r} and --gains sweeps it: give one of the two")
        for g in gains if takes_gain and gains else [None]:  # takes_gain implies gains
            for T in lengths:
                T = check_positive_int("length", T)
                for s in seeds:
                    o = dict(opts)
                    if g is not None:
                        o["gain"] = float(g)
                    o = command_options(name, o, T)  # IndRNN's recurrent-weight range depends on the horizon
                    parts = [label] + ([f"g={_fmt(g)}"] if g is not None else []) + [f"T={T}", f"s={s}"]
                    out.append(
                        Config(
                            name="/".join(parts),
                            cell=name,
                            options=o,
                            label=label,
                            length=T,
                            seed=int(s),
                            gain=None if g is None else float(g),
                            **common,
                        )
                    )
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ConfigError("two cells of the sweep have the same label: give them different names (lstm:name=…)")
    return out
