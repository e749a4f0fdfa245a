"""One small name → entry registry, so that lookup and "did you mean …" exist once.

Used by the cell registry, the task registry, the reproductions and the check output formats. Each
keeps its own public functions and its own message; this holds the entries in registration order and
builds the message of an unknown name::

    FORMATS = Registry("format", unknown="format={name!r} is not allowed; {hint}use one of {known}")
    FORMATS.register("text", format_text)
    FORMATS.get("txet")   # UnknownNameError: format='txet' is not allowed; did you mean text? use one of text

JAX-free (``gradscope check`` uses it): it imports only the standard library and ``gradscope._errors``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from gradscope._errors import UnknownNameError

T = TypeVar("T")

_DEFAULT_UNKNOWN = "{what}={name!r} is not a registered {what}: {hint}known names are {known}"


def did_you_mean(name: object, choices: Iterable[str], n: int = 3) -> str:
    """``"did you mean a, b? "`` for the names in ``choices`` close to ``name`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(name), list(choices), n=n)
    return f"did you mean {', '.join(close)}? " if close else ""


class Registry(Generic[T]):
    """Named entries in registration order; `get` of an unknown name raises a one-line error with suggestions.

    ``what`` names the kind of entry (``"cell"``, ``"task"``) in messages. ``unknown`` is the message of an
    unknown name, a `str.format` template with the fields ``what``, ``name`` (the name asked for: use
    ``{name!r}``), ``hint`` (``"did you mean …? "`` or empty) and ``known`` (the names, comma-separated).
    ``error`` is the exception raised (`UnknownNameError` or a subclass of it); ``suggestions`` how many
    close names are offered at most.
    """

    def __init__(
        self,
        what: str,
        *,
        unknown: str = _DEFAULT_UNKNOWN,
        error: type[UnknownNameError] = UnknownNameError,
        suggestions: int = 3,
    ) -> None:
        if not (isinstance(error, type) and issubclass(error, UnknownNameError)):
            raise TypeError(f"error={error!r} must be UnknownNameError or a subclass of it")
        self.what = what
        self._unknown = unknown
        self._error = error
        self._suggestions = suggestions
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` and return it; a name registered twice is a bug (`RuntimeError`)."""
        if name in self._entries:
            raise RuntimeError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``; else ``error`` naming it, the closest names and the known ones."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name (a list from a config file) is unknown too
            hint = did_you_mean(name, self._entries, self._suggestions)
            raise self._error(
                self._unknown.format(what=self.what, name=name, hint=hint, known=", ".join(self._entries))
            ) from None

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def entries(self) -> tuple[T, ...]:
        """The registered entries, in registration order."""
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self)} entries: {', '.join(self._entries)})"
