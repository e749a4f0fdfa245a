"""Assert gradient flow in your own test suite (a pytest helper and plugin).

    from gradscope.testing import assert_gradient_flow

    def test_lstm_keeps_gradients(tmp_path):
        cell = gs.cells.make("lstm", 4, 32, key=jax.random.key(0), forget_bias=1.0)
        xs = jax.random.normal(jax.random.key(1), (4, 100, 4))
        assert_gradient_flow(cell, xs, min_horizon=20, max_lyapunov=0.0)              # explicit bounds
        assert_gradient_flow(cell, xs, baseline="tests/baselines/lstm.json")          # or a stored baseline

Explicit bounds are checked on ``analysis.summary`` (see :func:`gradscope.analyse`):
``horizon >= min_horizon``, ``lyapunov_max <= max_lyapunov`` and ``decay_per_step >= -max_decay``
(``max_decay`` is the fastest allowed decay of the log10 gradient norm, decades per step). A stored
baseline is compared with :func:`gradscope.checks.compare` (tolerances as in ``gradscope check``).

Baselines change only when asked: ``update=True``, the environment variable
``GRADSCOPE_UPDATE_BASELINES=1``, or the pytest option ``--gradscope-update-baselines``. A missing
baseline fails (as syrupy and ``jest --ci`` do) and says how to create it.

This module is also a pytest plugin (entry point ``pytest11: gradscope = "gradscope.testing"``, or
``-p gradscope.testing``): it adds the option and a ``gradscope_regression`` fixture that keeps one
baseline per test under ``<test folder>/baselines/<test module>/<test name>.json``. It imports JAX
only when an analysis runs, so loading the plugin costs nothing.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest
    from jax.typing import ArrayLike

    from gradscope.analysis import Analysis

UPDATE_ENV = "GRADSCOPE_UPDATE_BASELINES"
UPDATE_OPTION = "--gradscope-update-baselines"
_update_from_pytest = False  # set by the plugin's pytest_configure

__all__ = ["assert_gradient_flow", "update_requested", "report_from_analyses", "GradientFlowRegression"]


def update_requested(update: bool = False) -> bool:
    """True if baselines should be (re)written: ``update``, ``$GRADSCOPE_UPDATE_BASELINES`` or the pytest option."""
    env = os.environ.get(UPDATE_ENV, "").strip().lower()
    return bool(update) or env not in ("", "0", "false", "no", "off") or _update_from_pytest


def report_from_analyses(*analyses: Any, command: str = "pytest", config: dict | None = None) -> dict[str, Any]:
    """A ``gradscope.report/1`` document holding ``analyses`` (``Analysis`` objects or their ``to_dict()``)."""
    import jax

    import gradscope

    dicts = [a if isinstance(a, dict) else a.to_dict() for a in analyses]
    precision = (dicts[0].get("precision") or {}) if dicts else {}
    return {
        "schema": "gradscope.report/1",
        "gradscope_version": gradscope.__version__,
        "created": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "command": command,
        "config": dict(config or {}),
        "environment": {
            "gradscope": gradscope.__version__,
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "device": str(jax.devices()[0].device_kind),
            "x64": bool(jax.config.read("jax_enable_x64")),
            "dtype": precision.get("dtype"),
            "matmul_precision": precision.get("matmul"),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "analyses": dicts,
    }


def _bound_failures(summary: dict, min_horizon, max_lyapunov, max_decay) -> list[str]:
    failures = []
    if min_horizon is not None:
        horizon = summary.get("horizon")
        if horizon is None or not horizon >= min_horizon:
            failures.append(
                f"gradient horizon {horizon} steps < min_horizon={min_horizon} (threshold log10 norm "
                f"{summary.get('horizon_threshold')}): gradients vanish too early"
            )
    if max_lyapunov is not None:
        lyap = summary.get("lyapunov_max")
        if lyap is None or (isinstance(lyap, float) and math.isnan(lyap)):
            failures.append(
                "lyapunov_max was not computed; call with lyapunov=True (the default) to check max_lyapunov"
            )
        elif not lyap <= max_lyapunov:
            failures.append(
                f"largest Lyapunov exponent {lyap:.6g} nats/step > max_lyapunov={max_lyapunov}: "
                "perturbations (and gradients) grow along the trajectory"
            )
    if max_decay is not None:
        decay = summary.get("decay_per_step")
        if decay is None or not decay >= -max_decay:
            rate = "an unknown rate" if decay is None else f"{-decay:.6g} decades/step"
            failures.append(f"gradient norm decays by {rate} > max_decay={max_decay} decades/step")
    return failures


def assert_gradient_flow(
    model: Any,
    xs: ArrayLike,
    *,
    min_horizon: int | None = None,
    max_lyapunov: float | None = None,
    max_decay: float | None = None,
    baseline: str | os.PathLike | None = None,
    update: bool = False,
    name: str | None = None,
    overrides: dict | None = None,
    **analyse_kwargs: Any,
) -> Analysis:
    """Analyse ``model`` on ``xs`` with :func:`gradscope.analyse` and assert that gradients flow.

    Raises ``AssertionError`` listing every violated bound, or every metric that regressed against
    ``baseline`` (a ``gradscope.baseline/1`` JSON file). When an update is requested (see module doc)
    the baseline is (re)written instead of compared. ``overrides`` refines the baseline's tolerances
    (same tables as a ``gradscope check --config`` TOML). Returns the ``Analysis``.
    """
    from gradscope import checks
    from gradscope._errors import ConfigError, check_number

    for arg, bound in (("min_horizon", min_horizon), ("max_lyapunov", max_lyapunov)):
        if bound is not None:
            check_number(arg, bound)
    if max_decay is not None and check_number("max_decay", max_decay) < 0:
        raise ConfigError(
            f"max_decay={max_decay!r} is not allowed: expected a rate >= 0 in decades per step "
            "(the check is decay_per_step >= -max_decay)"
        )
    if max_lyapunov is not None and analyse_kwargs.get("lyapunov") is False:
        raise ConfigError("max_lyapunov needs the Lyapunov exponents: do not pass lyapunov=False")
    import gradscope

    # looked up on the package at call time (so tests can patch it); pyright types the lazy
    # gradscope.__getattr__ as returning a module
    analysis = gradscope.analyse(model, xs, name=name or "model", **analyse_kwargs)  # pyright: ignore[reportCallIssue]
    failures = _bound_failures(dict(analysis.summary), min_horizon, max_lyapunov, max_decay)
    if failures:
        raise AssertionError("gradient flow check failed:\n  " + "\n  ".join(failures))
    if baseline is None:
        return analysis
    path = Path(baseline)
    report = report_from_analyses(analysis)
    if update_requested(update):
        previous = None
        if path.exists():
            try:
                previous = checks.load_baseline(path)
            except checks.CheckInputError:
                previous = None  # unreadable: replaced, as asked
        checks.save_baseline(checks.make_baseline(report, previous=previous), path, overwrite=True)
        return analysis
    if not path.exists():
        raise AssertionError(
            f"gradient-flow baseline {str(path)!r} does not exist; create it deliberately with "
            f"{UPDATE_ENV}=1 or pytest {UPDATE_OPTION} (or update=True), then commit it"
        )
    result = checks.compare(report, path, overrides)
    if not result.passed:
        raise AssertionError(checks.format_text(result))
    return analysis


# --------------------------------------------------------------------------------------------
# pytest plugin


class GradientFlowRegression:
    """What the ``gradscope_regression`` fixture returns: ``check(model, xs, **kw)`` compares with (or,
    on request, writes) this test's baseline file ``path``."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def check(self, model: Any, xs: ArrayLike, **kwargs: Any) -> Analysis:
        kwargs.setdefault("name", self.path.stem)
        return assert_gradient_flow(model, xs, baseline=self.path, **kwargs)

    __call__ = check


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradscope")
    group.addoption(
        UPDATE_OPTION,
        action="store_true",
        default=False,
        help=f"rewrite gradscope gradient-flow baselines instead of comparing with them (same as {UPDATE_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _update_from_pytest
    _update_from_pytest = bool(config.getoption(UPDATE_OPTION, default=False))


def pytest_unconfigure(config: pytest.Config) -> None:
    global _update_from_pytest
    _update_from_pytest = False


def _fixture():
    import pytest

    @pytest.fixture
    def gradscope_regression(request) -> GradientFlowRegression:
        """A :class:`GradientFlowRegression` whose baseline is ``baselines/<module>/<test>.json`` next to the test."""
        test_file = Path(request.node.path)
        test_name = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")
        return GradientFlowRegression(test_file.parent / "baselines" / test_file.stem / f"{test_name}.json")

    return gradscope_regression


try:  # the fixture exists only where pytest does; the rest of the module works without it
    gradscope_regression = _fixture()
except ImportError:  # pragma: no cover
    pass
