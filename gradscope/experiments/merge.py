"""Sweeps split over independent jobs: ``gradscope sweep --shard i/n`` and ``gradscope merge``.

For clusters without a JAX coordinator (Slurm arrays, GitHub matrix jobs, Ray/Dask tasks, plain shells),
the configuration list of a sweep is cut into ``n`` contiguous slices — deterministic: the slice depends
only on the grid, ``i`` and ``n`` (contiguous, so a shard holds few shape groups and compiles few
programs). Shard ``i`` (0-based, like ``$SLURM_ARRAY_TASK_ID``) writes ``part-<i>-of-<n>.json``: the
whole sweep's settings (with its full grid), its own index and its analyses. `merge_parts` checks that
the parts come from the same sweep (equal settings fingerprint) and are complete (every index 0..n−1
exactly once, each holding exactly its slice), then returns the analyses in grid order — from which
`gradscope merge` writes the same report an unsharded run writes (up to its creation time).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradscope._atomic import write_text
from gradscope._errors import ConfigError
from gradscope._json import dumps

PART_SCHEMA = "gradscope.sweep-part/1"
PART_RE = re.compile(r"^part-(\d+)-of-(\d+)\.json$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with 0 ≤ i < n."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise ConfigError(
            f"--shard={text!r} is not allowed: expected i/n with 0 ≤ i < n (0-based, like "
            "$SLURM_ARRAY_TASK_ID), e.g. --shard 0/4 … --shard 3/4"
        )
    return int(m[1]), int(m[2])


def shard_slice(n_items: int, index: int, count: int) -> slice:
    """Contiguous, balanced slice ``index`` of ``count`` over ``n_items`` (sizes differ by at most one)."""
    return slice(index * n_items // count, (index + 1) * n_items // count)


def shard_configs(configs: Sequence, index: int, count: int) -> list:
    return list(configs[shard_slice(len(configs), index, count)])


def part_name(index: int, count: int) -> str:
    return f"part-{index}-of-{count}.json"


def fingerprint(settings: dict[str, Any] | None) -> str:
    """sha256 of the sweep's settings (canonical JSON): equal for all shards of one sweep."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_part(folder: str | os.PathLike[str], settings: dict, index: int, count: int, analyses: list[dict]) -> Path:
    """Write shard ``index`` of ``count`` atomically into ``folder``; returns the file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / part_name(index, count)
    doc = {
        "schema": PART_SCHEMA,
        "fingerprint": fingerprint(settings),
        "shard": {"index": index, "count": count},
        "settings": settings,
        "analyses": analyses,
    }
    return write_text(path, dumps(doc))


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"part {str(path)!r} cannot be read ({exc.__class__.__name__}): rerun its shard") from None
    if not isinstance(doc, dict) or doc.get("schema") != PART_SCHEMA:
        raise ConfigError(
            f"{str(path)!r} is not a gradscope sweep part "
            f"(schema {doc.get('schema') if isinstance(doc, dict) else None!r}, "
            f"expected {PART_SCHEMA!r})"
        )
    return doc


def find_parts(paths: Sequence) -> list[Path]:
    """Part files from files and folders (a folder contributes every ``part-*-of-*.json`` in it)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if PART_RE.match(q.name))
        elif p.exists():
            out.append(p)
        else:
            raise ConfigError(f"PARTS={str(p)!r} does not exist: give part files or the folder holding them")
    if not out:
        raise ConfigError(
            f"no part-<i>-of-<n>.json files in {', '.join(map(str, paths))}: run "
            "`gradscope sweep --shard i/n --out FOLDER` for every i first"
        )
    return out


def merge_parts(paths: Sequence) -> tuple[dict, list[dict]]:
    """``(settings, analyses in grid order)`` from the parts of one sweep; refuses mixed or missing parts."""
    docs = [(p, _read(p)) for p in find_parts(paths)]
    p0, d0 = docs[0]
    fp, count = d0.get("fingerprint"), d0.get("shard", {}).get("count")
    seen: dict[int, Path] = {}
    for p, d in docs:
        if d.get("fingerprint") != fp or fingerprint(d.get("settings")) != fp:
            raise ConfigError(
                f"parts {str(p0)!r} and {str(p)!r} come from different sweeps (other settings): "
                "merge only the parts of one sweep"
            )
        i, n = d.get("shard", {}).get("index"), d.get("shard", {}).get("count")
        if n != count:
            raise ConfigError(
                f"part {str(p)!r} is shard {i}/{n} but {str(p0)!r} is one of {count}: every shard must use the same n"
            )
        if i in seen:
            raise ConfigError(f"shard {i}/{n} is given twice ({str(seen[i])!r} and {str(p)!r})")
        seen[i] = p
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise ConfigError(
            f"shards {', '.join(f'{i}/{count}' for i in missing)} are missing: run "
            f"`gradscope sweep … --shard i/{count}` for them, then merge again"
        )
    grid = [c["name"] for c in d0["settings"].get("grid", [])]
    by_index = {d["shard"]["index"]: (p, d) for p, d in docs}
    analyses = []
    for i in range(count):
        p, d = by_index[i]
        want = grid[shard_slice(len(grid), i, count)]
        got = [a.get("name") for a in d.get("analyses", [])]
        if got != want:
            raise ConfigError(
                f"part {str(p)!r} is incomplete or altered: it holds {len(got)} analyses, shard "
                f"{i}/{count} of this grid has {len(want)}; rerun that shard"
            )
        analyses += d["analyses"]
    return d0["settings"], analyses
