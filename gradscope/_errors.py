"""The one family of exceptions gradscope raises on bad input.

Every message names the argument, the value received and what is allowed, so the CLI can print it
as one line and exit with code 2.
"""

from __future__ import annotations

import math


class GradscopeError(Exception):
    """Base class: a problem the user can fix (bad option, shape, file)."""

    exit_code = 2


class ConfigError(GradscopeError, ValueError):
    """An option or hyperparameter has a value that is not allowed."""


class ShapeError(GradscopeError, ValueError):
    """An array has the wrong shape or rank."""


class UnknownNameError(GradscopeError, KeyError):
    """A name (cell, input source, task, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NonFiniteError(GradscopeError, FloatingPointError):
    """A result is NaN or infinite where a finite number was required."""


def bad_value(name: str, value: object, allowed: str, cls: type[GradscopeError] = ConfigError) -> GradscopeError:
    """Build the standard message: what, which value, how to fix."""
    return cls(f"{name}={value!r} is not allowed: {allowed}")


def check_number(name: str, value: object, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite real number, optionally > 0 or >= 0, as a float; else a `ConfigError` naming it.

    Python and NumPy ints and floats are numbers; bools are not, although Python counts ``True`` as the
    int 1 (``forget_bias=True`` is a mistake, not 1.0), and neither are strings, None or arrays.
    """
    import math
    import numbers

    # numbers.Real covers NumPy's scalar types without importing NumPy; np.bool_ is not registered as one
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise bad_value(name, value, "expected a finite number")
    try:
        number = float(value)
    except (OverflowError, TypeError, ValueError):  # an int beyond float range is not finite either
        number = math.inf
    if not math.isfinite(number):
        raise bad_value(name, value, "expected a finite number")
    if positive and not number > 0:
        raise bad_value(name, value, "expected a positive number")
    if nonnegative and not number >= 0:
        raise bad_value(name, value, "expected a number >= 0")
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a Python bool; else a `ConfigError` naming it (1 and "yes" are not booleans)."""
    if not isinstance(value, bool):
        raise bad_value(name, value, "expected True or False")
    return value


def check_positive_int(name: str, value: object) -> int:
    """A positive integer (Python or NumPy; not a bool, not a float such as 4.0); else a `ConfigError`."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise bad_value(name, value, "expected a positive integer")
    return int(value)


def check_chained(layer: int, input_size: int, previous_output: int) -> None:
    """Layer ``layer`` of a stack reads what layer ``layer - 1`` outputs: its ``input_size`` must equal that width
    (``previous_output``); else a `ConfigError` naming both (the check of `gradscope.nets.Stack`, which importers
    also run on their plans without importing JAX)."""
    if input_size != previous_output:
        raise ConfigError(f"layer {layer} has input_size={input_size} but layer {layer - 1} outputs {previous_output}")


def check_clip_range(name: str, value: object) -> tuple[float, float] | None:
    """None, or a clipping range ``(lo, hi)`` of a nonnegative quantity with 0 ≤ lo < hi (hi may be inf), returned
    as a tuple of floats; the range that clips nothing, (0, inf), is None (Mamba-2's ``time_step_limit`` on Δ:
    checked by the cell's builder and, without importing JAX, by the importer)."""
    if value is None:
        return None
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise bad_value(name, value, "expected None or a pair (lo, hi), e.g. (0.0, 0.1)")
    lo = check_number(f"{name}[0]", value[0], nonnegative=True)
    try:
        hi = float(value[1])  # inf allowed
    except (TypeError, ValueError):
        raise bad_value(f"{name}[1]", value[1], "expected a number above lo, or inf") from None
    if not hi > lo:
        raise bad_value(name, value, "expected lo < hi")
    return None if (lo == 0.0 and hi == math.inf) else (lo, hi)
