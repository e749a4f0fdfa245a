"""Figure to PNG bytes, laid out and drawn once (`to_png`): ~0.16 s a report figure instead of ~0.32 s
(``Figure.savefig``) on one core of the 2-core CPU (benchmarks/bench_figures.py).

``Figure.savefig`` with a layout engine draws a figure twice: once with rendering switched off, for the
constrained layout (itself two passes measuring every tick label, title and legend of every axes, several
times each), then for the image. Here:

* a figure made of a grid of plain axes (every line panel of the report: a row of axes, or the gates' grid,
  with titles, a suptitle, legends inside or anchored beside an axes) is laid out by `grid_layout`:
  constrained layout's own geometry (the pads, the spaces between axes, each axes' tight bounding box for
  layout, the suptitle's height; two passes as matplotlib makes them), with each tick label, axis label and
  title measured once (`layout_bbox`, `_text_box`) and the margins added up directly instead of by the
  constraint solver: the axes land where constrained layout puts them. The axis labels and titles are then
  settled where the draw would put them again, each "best" legend place searched for once and pinned, and
  the figure drawn once without a layout engine. A figure it does not handle (a colour bar, a fixed aspect,
  spanning axes...) keeps its constrained layout, which then runs at the start of the one draw;
* the Agg renderer of each figure size is kept for the next figure of that size, with one mathtext parser
  for all (matplotlib caches text extents per renderer and math layouts per parser), and the text boxes
  measured for the layout are kept by string, font, alignment and rotation: the report's figures share
  their tick labels, axis labels and legends;
* the PNG is written from the Agg buffer (`encode`): RGB where every pixel is opaque, zlib level
  `COMPRESS_LEVEL`, matplotlib's metadata.

The PNG of a figure is the same, byte for byte, whatever was drawn before it in the process (the caches
hold measurements, computed by matplotlib's own code and used as they come, never pixels; the canvas is
cleared before each draw), so a worker's PNG is the in-process one.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure

#: renderers kept for reuse, by (thread, width, height, dpi); the least recently used beyond this are dropped
MAX_RENDERERS = 8
_renderers: OrderedDict[tuple, RendererBase] = OrderedDict()
_mathtext = None  # the one mathtext parser of the kept renderers (its parses are cached per parser)
_canvas_class = None


def _canvas(fig: Figure):
    """An Agg canvas for ``fig`` whose renderer is the kept one of its size (`MAX_RENDERERS`)."""
    global _canvas_class
    if _canvas_class is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
        from matplotlib.mathtext import MathTextParser

        class _KeptRendererCanvas(FigureCanvasAgg):
            def get_renderer(self):
                global _mathtext
                w, h = self.get_width_height(physical=True)
                key = (threading.get_ident(), w, h, self.figure.dpi)
                renderer = _renderers.get(key)
                if renderer is None:
                    renderer = RendererAgg(w, h, self.figure.dpi)
                    if _mathtext is None:
                        _mathtext = MathTextParser("path")  # what RendererAgg makes for itself
                    renderer.mathtext_parser = _mathtext
                    _renderers[key] = renderer
                    while len(_renderers) > MAX_RENDERERS:
                        _renderers.popitem(last=False)
                else:
                    _renderers.move_to_end(key)
                self.renderer = renderer
                return renderer

        _canvas_class = _KeptRendererCanvas
    return _canvas_class(fig)


def to_png(fig: Figure, dpi: int) -> bytes:
    """``fig`` as PNG bytes at ``dpi``, laid out (`grid_layout`, else its own layout engine) and drawn once,
    what ``fig.savefig(buf, format="png", dpi=dpi)`` draws (`encode` writes it).

    The figure is left at that resolution, with the layout it was drawn with (no layout engine where
    `grid_layout` placed its axes): it is meant for figures made to be written, as the report's are. Under
    ``savefig.bbox: tight`` or ``savefig.transparent`` rcParams the figure is saved by ``savefig`` itself."""
    import matplotlib as mpl

    if mpl.rcParams["savefig.bbox"] == "tight" or mpl.rcParams["savefig.transparent"]:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        return buf.getvalue()
    # as savefig: the figure's own colours unless the rcParams say otherwise
    for setter, color in (
        (fig.set_facecolor, mpl.rcParams["savefig.facecolor"]),
        (fig.set_edgecolor, mpl.rcParams["savefig.edgecolor"]),
    ):
        if not (isinstance(color, str) and color == "auto"):
            setter(color)
    fig.set_dpi(dpi)
    canvas = _canvas(fig)
    renderer = canvas.get_renderer()
    if grid_layout(fig, renderer):
        pin_best_legends(fig, renderer)
    canvas.draw()  # once: a layout engine left on the figure runs at the start of that draw
    return encode(canvas.buffer_rgba(), dpi)


#: zlib level of the PNGs: 3 writes them ~1.5x faster than zlib's default 6, 1.5 % larger
COMPRESS_LEVEL = 3


def encode(rgba, dpi: int) -> bytes:
    """The Agg buffer ``rgba`` (height x width x 4 bytes) as PNG bytes with matplotlib's metadata (its version as
    ``Software``, the resolution): RGB where every pixel is opaque (the report's figures are: a quarter fewer
    bytes to compress and to embed in the HTML page), RGBA otherwise; zlib level `COMPRESS_LEVEL`."""
    import matplotlib as mpl
    import numpy as np
    from PIL import Image, PngImagePlugin

    arr = np.asarray(rgba)
    image = Image.frombuffer("RGBA", (arr.shape[1], arr.shape[0]), arr, "raw", "RGBA", 0, 1)
    if image.getchannel("A").getextrema()[0] == 255:
        image = image.convert("RGB")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"Matplotlib version{mpl.__version__}, https://matplotlib.org/")
    buf = io.BytesIO()
    image.save(buf, format="png", pnginfo=info, dpi=(dpi, dpi), compress_level=COMPRESS_LEVEL)
    return buf.getvalue()


def _outside(artists, ax) -> list:
    """The artists of ``ax``'s tight bounding box that may reach outside it: texts, annotations, legends
    anchored elsewhere than in the axes; not the spines (their tick marks lie within the tick labels), nor a
    legend placed inside the axes (``loc`` without ``bbox_to_anchor``), whose "best" place is costly to find."""
    from matplotlib.legend import Legend
    from matplotlib.spines import Spine

    return [
        a
        for a in artists
        if not isinstance(a, Spine) and not (isinstance(a, Legend) and a.get_bbox_to_anchor() is ax.bbox)
    ]


#: text boxes relative to their anchor, by what they depend on (`_text_box`); emptied when the text settings
#: (``font.*``, ``text.*``, ``mathtext.*`` rcParams) change, or when it holds `MAX_TEXT_BOXES`
_boxes: dict = {}
_boxes_rc: tuple | None = None
MAX_TEXT_BOXES = 20000


def _check_text_settings() -> None:
    global _boxes_rc
    import matplotlib as mpl

    rc = tuple((k, str(v)) for k, v in mpl.rcParams.items() if k.startswith(("font.", "text.", "mathtext.")))
    if rc != _boxes_rc or len(_boxes) > MAX_TEXT_BOXES:
        _boxes.clear()
        _boxes_rc = rc


def _text_box(text, renderer):
    """``text.get_window_extent(renderer)``, from a box measured once per string, font, alignment and
    rotation (matplotlib lays a text out again for each query, several for each tick label in a layout)."""
    from matplotlib.transforms import Bbox

    if not text.get_visible():
        return Bbox.unit()
    x, y = text.get_transform().transform(text.get_unitless_position())
    string = text.get_text()
    if string == "":
        return Bbox.from_bounds(x, y, 0, 0)
    if text.get_wrap():
        return text.get_window_extent(renderer)
    key = (
        string,
        text.get_fontproperties(),
        text.get_rotation(),
        text.get_rotation_mode(),
        text.get_horizontalalignment(),
        text.get_verticalalignment(),
        getattr(text, "_linespacing", None),  # read directly: not every matplotlib >= 3.8 has a getter
        text.get_usetex(),
        text.get_parse_math(),
        renderer.dpi,
    )
    box = _boxes.get(key)
    if box is None:
        layout = getattr(text, "_get_layout", None)
        if layout is None:  # pragma: no cover - a matplotlib without it: no cache
            return text.get_window_extent(renderer)
        # the box relative to the anchor, as Text.get_window_extent translates it: the same floats
        box = _boxes[(key[0], key[1].copy(), *key[2:])] = layout(renderer)[0]
    return box.translated(x, y)


def _axis_box(axis, renderer):
    """``axis.get_tightbbox(renderer, for_layout_only=True)`` of an x axis below or a y axis left of its axes,
    with each tick label measured once (matplotlib measures them again to place the axis label); None where
    the axis is not such a plain one (tick labels on the other side, an offset text...): ask matplotlib."""
    from matplotlib.transforms import Bbox

    x_axis = axis.axis_name == "x"
    if axis.get_label_position() != ("bottom" if x_axis else "left") or not getattr(axis, "_autolabelpos", False):
        return None
    ticks = axis._update_ticks()
    tlb1 = [_text_box(t.label1, renderer) for t in ticks if t.label1.get_visible()]
    if not tlb1 or any(t.label2.get_visible() for t in ticks) or axis.major.formatter.get_offset():
        return None
    # the axis label where Axis._update_label_position puts it: beyond the tick labels (which lie beyond the
    # spine and its tick marks) by labelpad
    pad = axis.labelpad * axis.get_figure(root=True).dpi / 72
    lx, ly = axis.label.get_position()
    if x_axis:
        axis.label.set_position((lx, min(b.y0 for b in tlb1) - pad))
    else:
        axis.label.set_position((min(b.x0 for b in tlb1) - pad, ly))
    axis._update_offset_text_position(tlb1, [])
    axis.offsetText.set_text("")
    boxes = [_text_box(axis.offsetText, renderer)] if axis.offsetText.get_visible() else []
    boxes += tlb1
    if axis.label.get_visible():
        bb = _text_box(axis.label, renderer)
        if x_axis and bb.width > 0:
            bb = Bbox.from_extents((bb.x0 + bb.x1) / 2 - 0.5, bb.y0, (bb.x0 + bb.x1) / 2 + 0.5, bb.y1)
        if not x_axis and bb.height > 0:
            bb = Bbox.from_extents(bb.x0, (bb.y0 + bb.y1) / 2 - 0.5, bb.x1, (bb.y0 + bb.y1) / 2 + 0.5)
        boxes.append(bb)
    return Bbox.union([b for b in boxes if b._is_finite()])


def layout_bbox(ax, renderer):
    """``ax.get_tightbbox(renderer, for_layout_only=True, bbox_extra_artists=...)`` with the artists that
    may reach outside the axes (`_outside`), measured once (`_axis_box`, `_text_box`) where the axes is a
    plain one: x axis below, y axis left, titles above the axes; matplotlib's own otherwise."""
    return _layout_bbox(ax, renderer, _outside(ax.get_default_bbox_extra_artists(), ax))[0]


def _layout_bbox(ax, renderer, extra):
    """(`layout_bbox` of ``ax`` with the ``extra`` artists, whether it was measured here: False where
    matplotlib measured it)."""
    from matplotlib.transforms import Bbox

    def slow():
        return ax.get_tightbbox(renderer, for_layout_only=True, bbox_extra_artists=extra), False

    if not ax.get_visible() or getattr(ax, "_autotitlepos", None) is False or ax.get_axes_locator() is not None:
        return slow()
    if ax.xaxis.get_ticks_position() != "bottom":
        return slow()
    ax.apply_aspect()
    boxes = []
    for axis in (ax.xaxis, ax.yaxis) if ax.axison else ():
        if axis.get_visible() and axis.get_in_layout():
            box = _axis_box(axis, renderer)
            if box is None:
                return slow()
            boxes.append(box)
    axbox = ax.get_window_extent(renderer)
    boxes.append(axbox)
    for title in (ax.title, ax._left_title, ax._right_title):
        # Axes._update_title_position: at the top of the axes unless they overlap (tick labels on top, an offset
        # text: not here), lined up
        title.set_position((title.get_position()[0], 1.0))
        if title.get_visible():
            bt = _text_box(title, renderer)
            if title.get_text() and bt.y0 < axbox.y1:
                return slow()
            if bt.width > 0:
                bt = Bbox.from_extents((bt.x0 + bt.x1) / 2 - 0.5, bt.y0, (bt.x0 + bt.x1) / 2 + 0.5, bt.y1)
            boxes.append(bt)
    for a in extra:
        bb = a.get_tightbbox(renderer)
        if bb is not None and bb._is_finite():
            boxes.append(bb)
    return Bbox.union(boxes), True


def _settle(ax, renderer) -> None:
    """Place the axis labels of ``ax`` (measured here, `_layout_bbox`) for its final position and keep them,
    and its titles, there: matplotlib would place them again in the draw, measuring every tick label again
    for each axis label and each title."""
    for axis in (ax.xaxis, ax.yaxis) if ax.axison else ():
        if axis.get_visible() and axis.get_in_layout() and _axis_box(axis, renderer) is not None:
            axis._autolabelpos = False
    ax._autotitlepos = False  # the titles are at the top of the axes (`_layout_bbox`): where the draw puts them


def _grid(fig: Figure):
    """``(gridspec, {axes: (row, col)}, constrained layout engine)`` where every axes of ``fig`` fills one cell
    of the one gridspec, with nothing else to lay out; None otherwise."""
    from matplotlib.gridspec import GridSpec
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    engine = fig.get_layout_engine()
    if type(engine) is not ConstrainedLayoutEngine or getattr(engine, "_compress", False):
        return None
    if tuple(engine.get()["rect"]) != (0, 0, 1, 1) or fig.subfigs or fig.legends or fig.images or not fig.axes:
        return None
    sup = getattr(fig, "_suptitle", None)
    if any(t is not sup for t in fig.texts) or getattr(fig, "_supxlabel", None) or getattr(fig, "_supylabel", None):
        return None
    gs, cells = None, {}
    for ax in fig.axes:
        ss = ax.get_subplotspec()
        if ss is None or not ax.get_in_layout() or ax.get_aspect() != "auto" or ax.get_axes_locator() or ax.child_axes:
            return None  # a colour bar (no subplotspec in constrained layout), a fixed aspect, an inset...
        if gs is None:
            gs = ss.get_gridspec()
        if ss.get_gridspec() is not gs or len(ss.rowspan) != 1 or len(ss.colspan) != 1:
            return None
        cell = (ss.rowspan.start, ss.colspan.start)
        if cell in cells.values():
            return None  # twinned axes
        cells[ax] = cell
    if type(gs) is not GridSpec or gs.figure is not fig:
        return None
    return gs, cells, engine


def grid_layout(fig: Figure, renderer) -> bool:
    """Place the axes of ``fig`` where its constrained layout would, and switch the layout engine off; False
    (the figure untouched) where the figure is not a grid of plain axes (`_grid`) or the axes would
    collapse.

    It follows ``matplotlib._constrained_layout``: each axes' margins are its decorations (its tight
    bounding box for layout beyond its position: tick labels, axis labels, title, texts, anchored legends)
    plus the pads (``w_pad``/``h_pad``, or half of ``wspace``/``hspace`` shared among the gaps between
    axes), the largest of a column (row) for that column (row); the suptitle takes its height and two pads
    at the top; what is left is shared among the columns (rows) by the gridspec's ratios. As matplotlib
    does, the decorations are measured twice, the second time where the first pass put the axes (tick
    labels change with the axes' size)."""
    grid = _grid(fig)
    if grid is None:
        return False
    import numpy as np
    from matplotlib.transforms import Bbox

    gs, cells, engine = grid
    _check_text_settings()
    nrows, ncols = gs.get_geometry()
    params = engine.get()
    width, height = fig.get_size_inches()
    w_pad, h_pad = params["w_pad"] / width, params["h_pad"] / height
    wspace = (gs.wspace if gs.wspace is not None else params["wspace"]) / 2
    hspace = (gs.hspace if gs.hspace is not None else params["hspace"]) / 2
    wr = [float(r) for r in np.ravel(gs.get_width_ratios() or [1] * ncols)]
    hr = [float(r) for r in np.ravel(gs.get_height_ratios() or [1] * nrows)]
    to_fig = fig.transFigure.inverted()
    sup = getattr(fig, "_suptitle", None)
    sup = sup if sup is not None and sup.get_in_layout() and getattr(sup, "_autopos", False) else None

    def pads(n, pad, space):
        inner = space / n if space / n > pad else pad  # get_margin_from_padding
        return [pad if i == 0 else inner for i in range(n)], [pad if i == n - 1 else inner for i in range(n)]

    lcb, rcb = pads(ncols, w_pad, wspace)
    tcb, bcb = pads(nrows, h_pad, hspace)
    extra = {ax: _outside(ax.get_default_bbox_extra_artists(), ax) for ax in cells}
    for _ in range(2):
        left, right, top, bottom = [0.0] * ncols, [0.0] * ncols, [0.0] * nrows, [0.0] * nrows
        fast = []
        for ax, (r, c) in cells.items():
            pos = ax.get_position(original=True)
            tight, measured = _layout_bbox(ax, renderer, extra[ax])
            if measured:
                fast.append(ax)
            bb = pos if tight is None else tight.transformed(to_fig)
            left[c] = max(left[c], pos.x0 - bb.x0)
            right[c] = max(right[c], bb.x1 - pos.x1)
            top[r] = max(top[r], bb.y1 - pos.y1)
            bottom[r] = max(bottom[r], pos.y0 - bb.y0)
        fig_top = 0.0
        if sup is not None:
            sup.set_position((sup.get_position()[0], 1 - h_pad))
            fig_top = sup.get_tightbbox(renderer).transformed(to_fig).height + 2 * h_pad
        inner_w = 1.0 - sum(left) - sum(right) - sum(lcb) - sum(rcb)
        inner_h = 1.0 - fig_top - sum(top) - sum(bottom) - sum(tcb) - sum(bcb)
        if inner_w <= 0 or inner_h <= 0:
            return False  # constrained layout would warn and leave the axes where they are: let it
        xs, x = [], 0.0
        for c in range(ncols):
            x0 = x + lcb[c] + left[c]
            xs.append((x0, x0 + inner_w * wr[c] / sum(wr)))
            x = xs[-1][1] + right[c] + rcb[c]
        ys, y = [], 1.0 - fig_top
        for r in range(nrows):
            y1 = y - tcb[r] - top[r]
            ys.append((y1 - inner_h * hr[r] / sum(hr), y1))
            y = ys[-1][0] - bottom[r] - bcb[r]
        placed = {ax: Bbox.from_extents(xs[c][0], ys[r][0], xs[c][1], ys[r][1]) for ax, (r, c) in cells.items()}
        for ax, box in placed.items():
            ax.set_position(box)
        if sup is not None:  # where constrained layout leaves it: its bottom a pad above the axes' margins
            sup.set_position((sup.get_position()[0], 1.0 - fig_top + h_pad))
            sup.set_verticalalignment("bottom")
    for ax in fast:
        _settle(ax, renderer)
    fig.set_layout_engine("none")
    return True


def pin_best_legends(fig: Figure, renderer) -> None:
    """Find the place of each ``loc="best"`` legend of ``fig`` once, now that its axes are placed, and pin it
    there (in axes coordinates): matplotlib would search again for each query of the legend's position."""
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None or getattr(leg, "_loc", None) != 0 or leg.get_bbox_to_anchor() is not ax.bbox:
            continue
        box = leg.get_window_extent(renderer)
        anchor = ax.bbox
        leg.set_loc(((box.x0 - anchor.x0) / anchor.width, (box.y0 - anchor.y0) / anchor.height))
