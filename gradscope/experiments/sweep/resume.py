"""The partial-results file of a sweep (JSON lines, one per finished configuration): an interrupted sweep
continues where it stopped and returns the identical list."""

from __future__ import annotations

import json
from pathlib import Path

from gradscope._atomic import write_text
from gradscope._errors import ConfigError
from gradscope.experiments.sweep.config import Config

PARTIAL_SCHEMA = "gradscope.sweep-partial/1"


def _settings(configs: list[Config]) -> dict:
    return {"configs": [c.to_dict() for c in configs]}


def read_partial(path: Path, configs: list[Config]) -> dict[str, dict]:
    """Finished analyses recorded in ``path`` for these ``configs`` (name → analysis dict).

    A file written for a different grid is refused (so two sweeps cannot mix results); a last line cut off
    by an interruption is ignored (that configuration is simply run again).
    """
    path = Path(path)
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("schema") != PARTIAL_SCHEMA:
        raise ConfigError(
            f"partial file {str(path)!r} is not a gradscope sweep partial-results file: delete it or "
            "pass another --partial"
        )
    wanted = {c.name: c.to_dict() for c in configs}
    if header.get("settings") != _settings(configs):
        raise ConfigError(
            f"partial file {str(path)!r} was written by a sweep with other settings: rerun with the "
            "same options, or delete it to start afresh"
        )
    done: dict[str, dict] = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by the interruption
        if isinstance(rec, dict) and isinstance(rec.get("name"), str) and rec.get("config") == wanted.get(rec["name"]):
            done[rec["name"]] = rec["analysis"]
    return done


def _write_lines(path: Path, lines: list[str]) -> None:
    write_text(path, "".join(l + "\n" for l in lines))
