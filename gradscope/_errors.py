"""The one family of exceptions gradscope raises on bad input.

Every message names the argument, the value received and what is allowed, so the CLI can print it
as one line and exit with code 2.
"""

from __future__ import annotations


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


def bad_value(name: str, value, allowed: str, cls=ConfigError) -> GradscopeError:
    """Build the standard message: what, which value, how to fix."""
    return cls(f"{name}={value!r} is not allowed: {allowed}")


def check_number(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite real number (not a bool), optionally > 0 or >= 0; else a `ConfigError` naming it."""
    import math

    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
        import numpy as np

        ok = ok or (isinstance(value, (np.integer, np.floating)) and not isinstance(value, np.bool_))
    except ImportError:  # pragma: no cover
        pass
    if not ok or not math.isfinite(float(value)):
        raise bad_value(name, value, "expected a finite number")
    if positive and not value > 0:
        raise bad_value(name, value, "expected a positive number")
    if nonnegative and not value >= 0:
        raise bad_value(name, value, "expected a number >= 0")
    return float(value)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise bad_value(name, value, "expected True or False")
    return value


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) or value <= 0:
        try:
            import numpy as np

            if isinstance(value, np.integer) and value > 0:
                return int(value)
        except ImportError:  # pragma: no cover
            pass
        raise bad_value(name, value, "expected a positive integer")
    return int(value)
