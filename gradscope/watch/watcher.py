"""`Watcher`: gradient-flow diagnostics from inside any training loop.

    with Watcher(xs, every=50, logdir="runs/exp1", backends=("tensorboard", "jsonl")) as w:
        for step in range(n_steps):
            ...                      # the user's own training step
            w.step(model, step)      # every 50th step: analyse the model's current weights on xs

At every step that is a multiple of ``every`` the watcher converts the model to a gradscope model
(`gradscope.watch.convert`: weights copied out, nothing of the framework's state touched — gradients,
parameters, RNG, train/eval mode), runs `gradscope.analyse` on the fixed ``inputs`` with the stages of
``metrics`` (default: the lag profile log10 ‖∂S_T/∂S_k‖₂ and its summary; `gradscope.watch.metrics`), and
hands the record to each backend: the JSON-lines log (always; `gradscope.watch.jsonl_backend`),
TensorBoard, MLflow. Any other step returns at once.

The inputs and the model's shapes do not change between steps, so the engine's jitted programs are
compiled at the first watched step and reused afterwards (the weights are traced arguments, not constants).
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gradscope._errors import ConfigError, ShapeError, check_number, check_positive_int
from gradscope._registry import Registry
from gradscope.watch.jsonl_backend import SCHEMA, analysis_record
from gradscope.watch.metrics import analyse_options, parse_metrics, scalars

#: backend name -> "module:Class", imported only when the backend is used
BACKENDS: Registry[str] = Registry("backend", unknown="backends: {name!r} is not allowed; {hint}use some of {known}")
BACKENDS.register("jsonl", "gradscope.watch.jsonl_backend:JsonlBackend")
BACKENDS.register("tensorboard", "gradscope.watch.tensorboard_backend:TensorBoardBackend")
BACKENDS.register("mlflow", "gradscope.watch.mlflow_backend:MlflowBackend")


def _backend_class(name: str):
    import importlib

    module, cls = BACKENDS.get(name).split(":")
    return getattr(importlib.import_module(module), cls)


def _check_inputs(inputs: Any) -> np.ndarray:
    """The inputs as a private NumPy copy: (T, m) or (B, T, m), floating, finite."""
    from gradscope._array_like import to_array

    try:
        xs = np.array(to_array(inputs), copy=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"inputs={type(inputs).__name__} is not allowed: expected an array ({e})") from None
    if xs.ndim not in (2, 3) or 0 in xs.shape:
        raise ShapeError(f"inputs have shape {xs.shape}: expected (T, input_size) or (batch, T, input_size)")
    if xs.dtype.kind != "f":
        raise ConfigError(f"inputs have dtype {xs.dtype}: expected floating-point values (e.g. xs.astype('float32'))")
    if not np.all(np.isfinite(xs)):
        raise ConfigError(f"inputs hold {int(xs.size - np.isfinite(xs).sum())} NaN/inf value(s): give finite inputs")
    return xs


class Watcher:
    """Analyse a model's gradient flow every ``every`` training steps and log it (see the module docstring).

    ``inputs``: the sequences the model is analysed on, ``(T, m)`` or ``(B, T, m)`` (NumPy, JAX or torch; copied).
    ``every``: analyse at the steps that are multiples of it. ``logdir``: the folder of the logs (created).
    ``backends``: any of "jsonl" (always written anyway), "tensorboard", "mlflow".
    ``metrics``: stages beyond the lag profile: any of "gates", "paths", "spectra", "lyapunov", or "all".
    ``name``: the model's name in the logs (default: the model's class name).
    ``convert``: a function model -> gradscope model, instead of the automatic conversion;
    ``convert_options``: keyword arguments for the automatic one (``prefix=``, ``kind=``, ``dtype=``).
    ``threshold``: the horizon threshold (log10 norm). ``tracking_uri``, ``experiment``, ``run_name``,
    ``run_id``: where MLflow logs (`gradscope.watch.mlflow_backend`).
    """

    def __init__(
        self,
        inputs: Any,
        every: int = 100,
        *,
        logdir: str | Path,
        backends: Iterable[str] = ("jsonl",),
        metrics: Any = None,
        name: str | None = None,
        convert: Callable[[Any], Any] | None = None,
        convert_options: dict | None = None,
        threshold: float = -3.0,
        tracking_uri: str | None = None,
        experiment: str = "gradscope",
        run_name: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.every = check_positive_int("every", every)
        self.threshold = check_number("threshold", threshold)
        if convert is not None and not callable(convert):
            raise ConfigError(f"convert={convert!r} is not allowed: give a function model -> gradscope model")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"name={name!r} is not allowed: give a non-empty string")
        if isinstance(backends, str):
            backends = (backends,)
        names = list(dict.fromkeys(["jsonl", *backends]))
        for b in names:
            BACKENDS.get(b)  # UnknownNameError naming the backends there are
        self.metrics = parse_metrics(metrics)
        self.inputs = _check_inputs(inputs)
        self.logdir = Path(logdir)
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"logdir={str(logdir)!r} cannot be created ({e.strerror or e})") from None
        self.name = name
        self._convert = convert
        self._convert_options = dict(convert_options or {})
        self._options = analyse_options(self.metrics)
        self.last: Any = None  # the last Analysis
        self.last_step: int | None = None
        self.analyses = 0  # how many steps were analysed
        self.closed = False
        opts = {
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "run_name": run_name,
            "run_id": run_id,
            "report_config": {"watch": {"every": self.every, "metrics": list(self.metrics), "logdir": str(logdir)}},
        }
        self.backends: list[Any] = []
        try:
            for b in names:
                self.backends.append(_backend_class(b)(self.logdir, **opts))
        except BaseException:
            self._close_backends(failed=True)
            raise

    # ----------------------------------------------------------------------------------------- loop

    def watched(self, step: int) -> bool:
        """Whether ``step`` is one the watcher analyses (a multiple of ``every``)."""
        return step % self.every == 0

    def step(self, model: Any, step: int, *, name: str | None = None):
        """At a multiple of ``every``: analyse ``model`` now and log it; return the `Analysis` (else None)."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ConfigError(f"step={step!r} is not allowed: expected the training step, an integer >= 0")
        if step % self.every:
            return None
        if self.closed:
            raise ConfigError("watcher.step was called after watcher.close(): create a new Watcher")
        from gradscope.analysis import analyse
        from gradscope.watch.convert import to_gradscope

        gmodel = self._convert(model) if self._convert is not None else to_gradscope(model, **self._convert_options)
        label = name or self.name or _model_name(model, gmodel)
        o = self._options
        a = analyse(
            gmodel,
            self.inputs,
            name=label,
            threshold=self.threshold,
            spectra=o["spectra"],
            lyapunov=o["lyapunov"],
            paths=o["paths"],
            gates=o["gates"],
        )
        record = {
            "schema": SCHEMA,
            "step": int(step),
            "wall_time": time.time(),
            "model": label,
            "analysis": analysis_record(a),
        }
        values = scalars(record)
        for b in self.backends:
            b.write(record, values, a)
        self.last, self.last_step = a, int(step)
        self.analyses += 1
        return a

    # ---------------------------------------------------------------------------------------- close

    def _close_backends(self, failed: bool) -> None:
        errors = []
        for b in self.backends:
            try:
                b.close(self.last, failed)
            except Exception as e:  # noqa: BLE001 - close every backend, then report the first failure
                errors.append(e)
        self.backends = []
        if errors:
            raise errors[0]

    def close(self, *, failed: bool = False) -> None:
        """Flush and close every backend (MLflow: log the report of the last analysis); idempotent."""
        if self.closed:
            return
        self.closed = True
        self._close_backends(failed)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    def __repr__(self) -> str:
        names = ", ".join(getattr(b, "name", type(b).__name__) for b in self.backends)
        return f"Watcher(every={self.every}, logdir={str(self.logdir)!r}, backends=({names}), metrics={self.metrics})"


def _model_name(model: Any, gmodel: Any) -> str:
    if model is gmodel:
        return str(getattr(model, "name", "") or type(model).__name__)
    if isinstance(model, dict):
        return str(getattr(gmodel, "name", "") or "model")
    return type(model).__name__
