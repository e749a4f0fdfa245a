"""TensorBoard event files for a watched run, written to ``logdir`` with tensorboardX's ``SummaryWriter``
(or ``torch.utils.tensorboard``'s when tensorboardX is missing).

Per watched step:

* scalars: the tags and values of `gradscope.watch.metrics.scalars` (``gradscope/<metric>``, and for a stack
  ``gradscope/<layer>/<metric>``), the numbers of the JSON-lines log;
* image ``gradscope/lag_profile``: log10 ‖∂S_T/∂S_k‖₂ against the lag T − k (and each layer's curve for a
  stack), drawn with matplotlib's Agg canvas (no pyplot state is touched);
* histogram ``gradscope/lag_profile``: the distribution of those log10 norms over the lags (null lags, an
  exactly-zero norm, left out): TensorBoard's histogram view then shows the profile shifting as training runs.

The writer is flushed after every step, so a killed run keeps its events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gradscope._errors import ConfigError
from gradscope.watch.metrics import PREFIX, lag_curve

EXTRA = "pip install 'gradscope[watch]' (or: pip install tensorboardX)"


def _writer(logdir: Path) -> Any:
    """tensorboardX's SummaryWriter on ``logdir``, else torch.utils.tensorboard's."""
    try:
        from tensorboardX import SummaryWriter

        return SummaryWriter(logdir=str(logdir))
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter  # needs the tensorboard package

        return TorchWriter(log_dir=str(logdir))
    except ImportError:
        raise ConfigError(f"backend 'tensorboard' needs tensorboardX or tensorboard: {EXTRA}") from None


def render_lag_profile(lags, curve, layers: dict | None = None, *, title: str = "") -> np.ndarray:
    """An RGB image (H, W, 3) uint8 of the lag profile ``curve`` (log10 norms, None = null) against ``lags``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.2), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    def arr(y):
        return np.asarray([np.nan if v is None else float(v) for v in y], np.float64)

    ax.plot(lags, arr(curve), color="k", lw=1.5, label="model")
    for name, c in (layers or {}).items():
        ax.plot(lags, arr(list(reversed(c))), lw=1, label=name)
    ax.set_xlabel("lag T − k")
    ax.set_ylabel("log10 ‖∂S_T/∂S_k‖₂")
    if title:
        ax.set_title(title, fontsize=9)
    if layers:
        ax.legend(fontsize=7)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class TensorBoardBackend:
    """Scalars, a lag-profile image and a lag-profile histogram per watched step (module docstring)."""

    name = "tensorboard"

    def __init__(self, logdir: Path, **_: Any) -> None:
        self.writer = _writer(logdir)

    def write(self, record: dict, scalars: dict[str, float], analysis: Any) -> None:
        from gradscope.report.history import snapshot

        step = int(record["step"])
        w = self.writer
        for tag, v in scalars.items():
            w.add_scalar(tag, v, global_step=step)
        curve = lag_curve(record)
        if curve is not None:
            lags, y = curve
            layers = {n: d["lag_profile"] for n, d in (snapshot(record).get("layers") or {}).items()}
            img = render_lag_profile(lags, y, layers, title=f"{record['model']} · step {step}")
            w.add_image(f"{PREFIX}/lag_profile", img, global_step=step, dataformats="HWC")
            finite = np.asarray([v for v in y if v is not None], np.float64)
            if finite.size:
                w.add_histogram(f"{PREFIX}/lag_profile", finite, global_step=step)
        w.flush()

    def close(self, last: Any = None, failed: bool = False) -> None:
        self.writer.close()
