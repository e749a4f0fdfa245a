"""mkdocs hooks for gradscope's documentation site (configured in mkdocs.yml; not part of the package).

* ``<!-- gradscope:api -->`` in a page becomes the API reference: one mkdocstrings block per public name of
  ``gradscope.__all__`` (resolved through ``gradscope._LAZY``, so moved modules need no edit here) and per
  listed member of a public module's ``__all__``. Names that do not exist are left out, never guessed.
* ``<!-- gradscope:cells -->`` becomes the table of registered cells (name, family, equation, description),
  read from the registry itself, so the page never drifts from ``gs.cells.names()``.
* Links that leave the docs folder (``](../notebooks/x.ipynb)``) point to repository files that are not pages:
  they become links into the repository when ``repo_url`` is set, else the path in code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

# Sections of the API page: public names (``gs.NAME``) or members of public modules (``gs.MODULE.NAME``).
API_SECTIONS: list[tuple[str, list[str]]] = [
    ("Analysing a model", ["analyse", "Analysis", "rollout", "Trajectory"]),
    (
        "Engine",
        [
            "step_jacobians",
            "lag_profile",
            "triangle",
            "singular_values",
            "step_singular_values",
            "lyapunov_spectrum",
            "path_split",
            "gate_statistics",
            "attribution",
            "probe_lag_profile",
            "engine.StepJacobians",
            "engine.LagProfile",
            "engine.Triangle",
            "engine.Spectra",
            "engine.Lyapunov",
            "engine.PathSplit",
            "engine.Attribution",
            "engine.ProbeProfile",
            "engine.bound",
            "parameter_sensitivity",
            "engine.parameter_sensitivity",
        ],
    ),
    (
        "Cells",
        [
            "cells.make",
            "cells.names",
            "cells.options",
            "cells.entries",
            "cells.Cell",
            "cells.pytree_cell",
            "cells.static",
            "cells.recurrent_bound",
            "cells.clip_recurrent",
            "collect_statistics",
        ],
    ),
    ("Networks", ["Stack", "Bidirectional", "stack", "bidirectional", "MLP", "make_mlp", "mlp_inputs"]),
    (
        "Import and export",
        [
            "io.from_torch",
            "io.load_model",
            "io.from_keras",
            "io.from_flax",
            "io.from_equinox",
            "io.to_torch_state_dict",
            "io.save_safetensors",
            "io.save_npz",
            "io.inspect_file",
            "io.read_arrays",
            "io.DeepBidirectional",
        ],
    ),
    (
        "Tasks and training",
        [
            "tasks.make",
            "tasks.names",
            "tasks.options",
            "train",
            "TrainResult",
            "TrainingDiverged",
            "Network",
            "Readout",
        ],
    ),
    (
        "Testing and CI checks",
        [
            "testing.assert_gradient_flow",
            "checks.compare",
            "checks.make_baseline",
            "checks.load_report",
            "checks.load_baseline",
        ],
    ),
    ("Errors", ["GradscopeError", "ConfigError", "ShapeError", "UnknownNameError", "NonFiniteError"]),
]


def _module_file(module: str) -> Path | None:
    """The source file of a gradscope module, found on disk (nothing is imported)."""
    import gradscope

    base = Path(gradscope.__file__).parent.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _static_all(module: str) -> set[str]:
    """The names in a module's ``__all__``, read with ``ast`` (the module is not imported)."""
    path = _module_file(module)
    if path is None:
        return set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            try:
                return {n for n in ast.literal_eval(node.value) if isinstance(n, str)}
            except ValueError:
                return set()
    return set()


def _resolve(name: str) -> str | None:
    """``"lag_profile"`` -> ``"gradscope.engine.lag_profile"``; ``"io.from_torch"`` -> ``"gradscope.io.from_torch"``."""
    import gradscope

    head, _, member = name.partition(".")
    target = gradscope._LAZY.get(head)
    if target is None:
        return None
    module, attr = target
    if not member:
        if attr is None:
            return module
        # `gradscope.engine.attribution` is both a submodule and the function it re-exports: name the function
        # by its defining module, so that the documentation tool does not pick the submodule
        return f"{module}.{attr}.{attr}" if _module_file(f"{module}.{attr}") else f"{module}.{attr}"
    if attr is not None or member not in _static_all(module):
        return None
    return f"{module}.{member}"


def _api_markdown() -> str:
    out, seen = [], set()
    for title, names in API_SECTIONS:
        paths = [p for n in names if (p := _resolve(n)) is not None and p not in seen]
        if not paths:
            continue
        seen.update(paths)
        out.append(f"## {title}\n")
        for path in paths:
            out.append(f"::: {path}\n    options:\n      heading_level: 3\n")
    return "\n".join(out)


def _cell(text) -> str:
    """A table cell: pipes escaped."""
    return str(text).replace("|", "\\|")


def _cells_markdown() -> str:
    from gradscope.cells import entries

    rows = ["| name | family | equation | description |", "|---|---|---|---|"]
    for e in entries():
        rows.append(f"| `{e.name}` | {_cell(e.family)} | {_cell(e.equation)} | {_cell(e.description)} |")
    return "\n".join(rows) + "\n"


_OUTSIDE_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(\.\./([^)#\s]+)(#[^)\s]*)?\)")


def _outside_link(m: re.Match, repo: str) -> str:
    text, path, anchor = m.group(1), m.group(2), m.group(3) or ""
    if repo:
        return f"[{text}]({repo}/blob/main/{path}{anchor})"
    if text.strip("`").rstrip("/") == path.rstrip("/"):
        return text
    return f"{text} (`{path}`)"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- gradscope:api -->" in markdown:
        markdown = markdown.replace("<!-- gradscope:api -->", _api_markdown())
    if "<!-- gradscope:cells -->" in markdown:
        markdown = markdown.replace("<!-- gradscope:cells -->", _cells_markdown())
    repo = (config.get("repo_url") or "").rstrip("/")
    return _OUTSIDE_LINK.sub(lambda m: _outside_link(m, repo), markdown)
