"""The cell registry: stable kebab-case names -> builders. The names are a public contract."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict, TypeVar

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from gradscope._errors import ConfigError, check_positive_int
from gradscope._registry import Registry

if TYPE_CHECKING:
    from gradscope.cells._base import Cell


class Sizes(TypedDict):
    """A cell's size fields, as keywords: ``Cell(..., **init.sizes)``."""

    input_size: int
    hidden_size: int


class Init(NamedTuple):
    """What every builder receives besides its options, checked once by `make`: the sizes, the weights' key
    (same key, same weights) and their dtype (float32 or float64)."""

    input_size: int
    hidden_size: int
    key: jax.Array
    dtype: jnp.dtype

    @property
    def sizes(self) -> Sizes:
        """The built cell's size fields: ``Cell(..., **init.sizes)``."""
        return Sizes(input_size=self.input_size, hidden_size=self.hidden_size)


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    family: str
    equation: str
    build: Callable[..., Cell]


_B = TypeVar("_B", bound=Callable[..., Any])

_REGISTRY: Registry[Entry] = Registry(
    "cell", unknown="cell={name!r} is not a registered cell: {hint}run `gradscope cells` for the list"
)


def registrar(family: str) -> Callable[..., Callable[[_B], _B]]:
    """The ``register`` decorator of one family's module (``register = registrar("lstm")``): every cell a module
    registers belongs to its family, which reports group by."""

    def register(name: str, description: str, *, equation: str) -> Callable[[_B], _B]:
        """Decorator for a builder ``build(init: Init, *, **options) -> Cell``: keyword-only options with defaults."""

        def deco(build: _B) -> _B:
            _REGISTRY.register(name, Entry(name, description, family, equation, build))
            return build

        return deco

    return register


def names() -> dict[str, str]:
    """Registered cell names with their one-line descriptions, in registration order."""
    return {e.name: e.description for e in _REGISTRY.entries()}


def entries() -> tuple[Entry, ...]:
    """Every registered cell's entry, in registration order."""
    return _REGISTRY.entries()


def entry(name: str) -> Entry:
    """The registered cell ``name``; else `UnknownNameError` with the closest names."""
    return _REGISTRY.get(name)


def options(name: str) -> dict[str, object]:
    """The options a cell accepts, with their defaults."""
    sig = inspect.signature(entry(name).build)
    return {p.name: p.default for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY}


def _check_key(key: object) -> None:
    """A typed key (``jax.random.key``) or a legacy uint32 ``(2,)`` key (``jax.random.PRNGKey``).

    Checked here so that an int seed gives a one-line ConfigError instead of a TypeError from inside JAX.
    """
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return
    raise ConfigError(f"key={key!r} is not allowed: expected a single jax.random key, e.g. jax.random.key(0)")


def make(
    name: str, input_size: int, hidden_size: int, *, key: jax.Array, dtype: DTypeLike = jnp.float32, **opts: Any
) -> Cell:
    """Build the registered cell ``name`` with freshly initialised weights.

    ``key`` is a `jax.random` key (same key, same weights); ``opts`` are cell options such as
    ``forget_bias`` (see `options(name)`).
    """
    e = entry(name)
    input_size = check_positive_int("input_size", input_size)
    hidden_size = check_positive_int("hidden_size", hidden_size)
    allowed = options(name)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConfigError(
            f"option {unknown[0]!r} is not accepted by cell {name!r}; allowed options: {', '.join(allowed) or 'none'}"
        )
    if dtype not in (jnp.float32, jnp.float64, "float32", "float64"):
        raise ConfigError(f"dtype={dtype!r} is not allowed: use float32 or float64")
    _check_key(key)
    cell: Cell = e.build(Init(input_size, hidden_size, key, jnp.dtype(dtype)), **opts)
    return dataclasses.replace(cell, registry_name=name)
