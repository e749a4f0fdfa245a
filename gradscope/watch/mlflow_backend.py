"""MLflow logging for a watched run, through ``mlflow.MlflowClient`` (the user's fluent ``mlflow`` state —
active run, tracking URI — is not changed).

* Where: ``tracking_uri`` (a local file store path/``file:`` URI, or ``sqlite:///path.db``; default: the
  ``MLFLOW_TRACKING_URI`` environment variable, else ``sqlite:///<logdir>/mlflow.db``).
* Which run: ``run_id`` if given; else the user's active fluent run (``mlflow.active_run()``) when no
  ``tracking_uri`` is given; else a new run ``run_name`` in experiment ``experiment`` (created with its
  artifacts under ``<logdir>/mlflow-artifacts`` if it does not exist), ended at ``close()`` (FAILED when the
  ``with`` block raised). A run the watcher did not create is left open.
* Per watched step: the scalars of `gradscope.watch.metrics.scalars` as metrics at that step (one
  ``log_batch`` call).
* At ``close()``: a gradscope report folder of the last analysis (`gradscope.report.write_report`)
  logged as the artifact folder ``gradscope-report``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from gradscope._errors import ConfigError

EXTRA = "pip install 'gradscope[watch]' (or: pip install mlflow)"
ARTIFACT_PATH = "gradscope-report"


class MlflowBackend:
    """Metrics per watched step and the report as an artifact at close (module docstring)."""

    name = "mlflow"

    def __init__(
        self,
        logdir: Path,
        *,
        tracking_uri: str | None = None,
        experiment: str = "gradscope",
        run_name: str | None = None,
        run_id: str | None = None,
        report_config: dict | None = None,
        **_: Any,
    ) -> None:
        try:
            import mlflow
            from mlflow import MlflowClient
        except ImportError:
            raise ConfigError(f"backend 'mlflow' needs the mlflow package: {EXTRA}") from None
        logdir = Path(logdir).resolve()
        if run_id is None and tracking_uri is None and mlflow.active_run() is not None:
            run = mlflow.active_run()
            assert run is not None
            run_id, tracking_uri = run.info.run_id, mlflow.get_tracking_uri()
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{logdir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        self.tracking_uri = uri
        self.own = run_id is None
        if run_id is None:
            exp = self.client.get_experiment_by_name(experiment)
            if exp is not None:
                exp_id = exp.experiment_id
            else:
                exp_id = self.client.create_experiment(
                    experiment, artifact_location=(logdir / "mlflow-artifacts").as_uri()
                )
            run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self.run_id: str = run_id
        self.report_config = dict(report_config or {})

    def write(self, record: dict, scalars: dict[str, float], analysis: Any) -> None:
        from mlflow.entities import Metric

        ts = int(1000 * float(record.get("wall_time") or time.time()))
        step = int(record["step"])
        metrics = [Metric(k, float(v), ts, step) for k, v in scalars.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, last: Any = None, failed: bool = False) -> None:
        try:
            if last is not None:
                from gradscope.report import build_report, write_report

                with tempfile.TemporaryDirectory(prefix="gradscope-watch-") as tmp:
                    out = write_report(
                        Path(tmp) / ARTIFACT_PATH, build_report([last], command="analyse", config=self.report_config)
                    )
                    self.client.log_artifacts(self.run_id, str(out), artifact_path=ARTIFACT_PATH)
        finally:
            if self.own:
                self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
