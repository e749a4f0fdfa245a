"""The reproduction framework: an `Experiment` (claim, source, quick and full settings, a runner) and the
`Context` a runner records its training runs and analyses in."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from gradscope._errors import ConfigError

if TYPE_CHECKING:
    import jax


SCHEMA = "gradscope.reproduction/1"


class Findings(TypedDict):
    """What a runner returns: the measured numbers, a one-paragraph ``outcome`` that states them, and the
    checks of the claim (`_common._check` records; `run` judges the claim by them)."""

    measurements: dict[str, Any]
    outcome: str
    checks: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named reproduction: the claim, its source, the quick and full settings and the runner.

    ``quick`` is sized for a 2-core CPU (CI), ``full`` is the papers' setting (GPU); the modules write the
    full one as the quick one with what the papers change (``_QUICK | dict(...)``), so both have the same
    keys and a shared value is stated once."""

    name: str
    title: str
    claim: str
    source: str
    quick: dict
    full: dict
    runner: Callable[[dict, Context], Findings]
    notes: str = ""

    def setting(self, quick: bool = True, **overrides: Any) -> dict:
        """The quick or full setting with ``overrides`` applied (unknown keys are refused)."""
        base = dict(self.quick if quick else self.full)
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise ConfigError(
                f"setting {unknown[0]!r} is not allowed for reproduction {self.name!r}: its settings "
                f"are {', '.join(base)}"
            )
        base.update(overrides)
        return base


@dataclasses.dataclass
class Context:
    """What a runner gets besides its setting: the seed and the progress callback."""

    seed: int
    progress: Callable[[dict], None]
    runs: list = dataclasses.field(default_factory=list)  # training-run records (report "training" section)
    analyses: list = dataclasses.field(default_factory=list)  # Analysis.to_dict() records

    def key(self, *path: int) -> jax.Array:
        import jax

        k = jax.random.key(self.seed)
        for p in path:
            k = jax.random.fold_in(k, p)
        return k

    def say(self, message: str) -> None:
        self.progress({"event": "message", "message": message})
