"""Small matplotlib helpers so notebooks don't repeat plotting boilerplate.

Every function returns the matplotlib ``Figure`` it drew on (the figure of ``ax`` when one is
passed) and never calls ``plt.show()``: in Jupyter the figure shows because it is the cell's last
value or because the inline backend shows open figures at the end of the cell.

Masks follow ``course_lib.masks``: boolean, ``True`` = this query may attend to this key,
rows are queries and columns are keys.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

# Small figures at 100 dpi: sharp enough on a laptop screen, light enough in saved notebooks.
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.figsize": (5.0, 3.2),
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.constrained_layout.use": True,
}

MASK_CMAP = "Blues"
ATTENTION_CMAP = "viridis"

#: One colour per family in every figure of the course (matplotlib's default cycle: blue, orange, green, red),
#: so that a colour means the same family from lesson to lesson. Keys: :class:`~course_lib.families.Family` values.
FAMILY_COLORS = {"encoder-only": "tab:blue", "decoder-only": "tab:orange", "encoder-decoder": "tab:green",
                 "prefix-lm": "tab:red"}


def family_color(family: str) -> str:
    """The course's colour for ``family``, in any spelling :class:`~course_lib.families.Family` accepts
    (``"encoder-decoder"``, ``"encdec"``, ``"prefix-LM"``, ...)."""
    from ..families import Family  # here, so that importing the plotting helpers stays light

    return FAMILY_COLORS[Family(family).value]


def log_axis(ax, axis: str = "x", ticks: Sequence[float] | None = None):
    """Put ``ax``'s ``"x"`` or ``"y"`` axis on a log scale with plain-number labels that do not crowd: at
    ``ticks`` when given (e.g. the values measured), else at 1, 2 and 5 times each power of ten; minor ticks
    unlabelled (matplotlib labels them on an axis spanning about one decade, and they overlap). Returns ``ax``."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y'; got {axis!r}.")
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(list(ticks)) if ticks is not None else LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())
    return ax


# Where label_points tries a label, in points from its point, nearest first: right, left, above, below, diagonals.
_LABEL_OFFSETS = [(4, -3), (-4, -3), (0, 5), (0, -11), (4, 4), (4, -10), (-4, 4), (-4, -10),
                  (8, 9), (8, -16), (-8, 9), (-8, -16), (0, 14), (0, -20)]


def label_points(ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], fontsize: float = 7) -> list:
    """Write ``labels[i]`` next to the point ``(xs[i], ys[i])`` (data coordinates) where it overlaps no other
    label, no marker or line of ``ax`` and not its legend, trying the nearest free place first (the least
    crowded one when none is free). Give the legend a fixed ``loc`` before calling: ``"best"`` moves
    after the labels are drawn. Returns the annotations."""
    from matplotlib.transforms import Bbox

    if not len(xs) == len(ys) == len(labels):
        raise ValueError(f"label_points needs as many labels as points; got {len(xs)} x, {len(ys)} y, {len(labels)} labels.")
    fig = ax.figure
    fig.canvas.draw()  # lay the figure out first, so that display coordinates are final
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72.0  # pixels per point
    obstacles = [t.get_window_extent(renderer) for t in ax.texts]
    paths = []
    for line in ax.lines:
        path = line.get_transform().transform_path(line.get_path())
        if line.get_linestyle() not in ("None", "none", "", " ") and len(path.vertices) > 1:
            paths.append(path)
        if line.get_marker() not in (None, "None", "none", "", " "):
            r = line.get_markersize() * px / 2
            obstacles += [Bbox.from_extents(x - r, y - r, x + r, y + r) for x, y in path.vertices]
    if ax.get_legend() is not None:
        obstacles.append(ax.get_legend().get_window_extent(renderer))
    inside = ax.get_window_extent(renderer)

    def crowding(box):
        boxes = sum(max(0.0, min(box.x1, o.x1) - max(box.x0, o.x0)) * max(0.0, min(box.y1, o.y1) - max(box.y0, o.y0))
                    for o in obstacles)
        lines = sum(p.intersects_bbox(box, filled=False) for p in paths)
        shown = Bbox.intersection(box, inside)  # None when the label lies wholly outside the axes
        outside = box.width * box.height - (0.0 if shown is None else shown.width * shown.height)
        return boxes + outside + 25.0 * lines  # a line through a label costs about as much as 25 square pixels hidden

    placed = []
    for x, y, text in zip(xs, ys, labels):
        best = None
        for dx, dy in _LABEL_OFFSETS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom")
            ann.set_in_layout(False)  # labels must not resize the axes they were placed on
            box = ann.get_window_extent(renderer).padded(1)
            cost = crowding(box)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost == 0:
                break
        obstacles.append(best[2])
        placed.append(best[1])
    return placed


_MAX_TICK_LABELS = 40  # beyond this many rows/columns, leave matplotlib's default ticks


def setup_style() -> None:
    """Course figure defaults: 100 dpi, small sizes and fonts (called by every notebook's setup cell).

    In Jupyter with the inline backend it also makes a figure that is displayed as a cell's value
    (``plot_mask(m)`` on the last line) show once, not twice: a displayed figure is closed, so the
    inline backend does not show it again at the end of the cell.
    """
    import matplotlib.pyplot as plt  # noqa: F401

    plt.close(plt.figure())  # load the backend now (in Jupyter the inline one registers its display hooks)
    matplotlib.rcParams.update(STYLE)
    _show_figures_once()


def _show_figures_once() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or "inline" not in str(matplotlib.get_backend()).lower():
        return
    from matplotlib.figure import Figure

    for formatter in shell.display_formatter.formatters.values():
        try:
            original = formatter.lookup_by_type(Figure)
        except KeyError:
            continue
        if getattr(original, "_course_closes_figure", False):
            continue  # already wrapped (setup cell run twice)

        def render(fig, _original=original):
            try:
                return _original(fig)
            finally:
                _plt().close(fig)  # shown now; the inline backend must not show it again

        render._course_closes_figure = True
        formatter.for_type(Figure, render)


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _to_2d(x: Any, what: str) -> np.ndarray:
    """A torch tensor / array-like as a 2-D numpy array; size-1 leading dims are squeezed."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy() if x.dtype.is_floating_point else x.detach().cpu().numpy()
    a = np.asarray(x)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(
            f"{what} must be one (T_q, T_k) matrix; got shape {tuple(np.shape(x))}. "
            f"Pick one example and head first, e.g. {what}[0, 0]."
        )
    return a


def _new_axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    plt = _plt()
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def _label_axes(ax, n_rows: int, n_cols: int, query_labels, key_labels) -> None:
    for labels, n, axis in ((query_labels, n_rows, "y"), (key_labels, n_cols, "x")):
        if labels is not None:
            labels = [str(t) for t in labels]
            if len(labels) != n:
                raise ValueError(f"got {len(labels)} {'query' if axis == 'y' else 'key'} labels for {n} positions.")
        if labels is None and n > _MAX_TICK_LABELS:
            continue
        ticks = np.arange(n)
        getattr(ax, f"set_{axis}ticks")(ticks)
        getattr(ax, f"set_{axis}ticklabels")(labels if labels is not None else [str(i) for i in ticks])
    if key_labels is not None and any(len(str(t)) > 2 for t in key_labels):
        for label in ax.get_xticklabels():
            label.set_rotation(90)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    for spine in ax.spines.values():  # a full frame around the grid, whatever the style says
        spine.set_visible(True)


def _size_for(n_rows: int, n_cols: int, extra_w: float = 0.0) -> tuple[float, float]:
    cell = 0.28
    return (min(7.0, max(2.2, n_cols * cell + 1.2 + extra_w)), min(6.0, max(2.0, n_rows * cell + 1.0)))


def plot_mask(mask, title: str | None = None, ax=None, query_labels=None, key_labels=None):
    """Draw a boolean attention mask as a grid: dark cell = the query (row) may attend to the key (column).

    ``mask`` is a bool tensor/array ``(T_q, T_k)``; size-1 leading dims (``(1, 1, T_q, T_k)``) are
    squeezed and a 1-D padding mask is drawn as one row. Returns the Figure.
    """
    m = _to_2d(mask, "mask").astype(bool)
    fig, ax = _new_axes(ax, _size_for(*m.shape))
    ax.imshow(m.astype(float), cmap=MASK_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    # thin white lines between cells so each (query, key) pair reads as one square
    ax.set_xticks(np.arange(-0.5, m.shape[1], 1), minor=True)
    ax.set_yticks(np.arange(-0.5, m.shape[0], 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    _label_axes(ax, m.shape[0], m.shape[1], query_labels, key_labels)
    if title:
        ax.set_title(title)
    return fig


def plot_masks(masks: Mapping[str, Any], query_labels=None, key_labels=None, ncols: int | None = None):
    """Several masks side by side, titled by their dict keys (e.g. encoder / causal / prefix-LM)."""
    if not masks:
        raise ValueError("plot_masks needs at least one mask.")
    n = len(masks)
    ncols = min(n, ncols or 4)
    nrows = -(-n // ncols)
    shapes = [_to_2d(m, "mask").shape for m in masks.values()]
    w, h = _size_for(max(s[0] for s in shapes), max(s[1] for s in shapes))
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(14.0, w * ncols), min(10.0, h * nrows)), squeeze=False)
    flat = axes.ravel()
    for ax, (name, m) in zip(flat, masks.items()):
        plot_mask(m, title=name, ax=ax, query_labels=query_labels, key_labels=key_labels)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig


def plot_attention(weights, query_labels=None, key_labels=None, title: str | None = None, ax=None,
                   annotate: bool | None = None, colorbar: bool = True):
    """Heatmap of attention weights ``(T_q, T_k)`` (rows: queries, columns: keys) with token labels.

    Pick one example and head first (``attn[0, h]``); size-1 leading dims are squeezed.
    ``annotate`` writes the values into the cells (default: only for grids up to 8 x 8).
    """
    w = _to_2d(weights, "weights").astype(float)
    fig, ax = _new_axes(ax, _size_for(*w.shape, extra_w=0.8 if colorbar else 0.0))
    vmax = max(float(np.nanmax(w)), 1e-12) if w.size else 1.0
    im = ax.imshow(w, cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest", aspect="equal")
    if annotate is None:
        annotate = w.shape[0] <= 8 and w.shape[1] <= 8
    if annotate:
        for (i, j), v in np.ndenumerate(w):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if v > 0.6 * vmax else "white")
    _label_axes(ax, w.shape[0], w.shape[1], query_labels, key_labels)
    if colorbar:
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title)
    return fig


def _series(history, y_key: str | None, x_key: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(x, y, key used) from a list of floats or a list of dicts such as ``{"step": 10, "loss": 2.3}``."""
    history = list(history)
    if not history or not isinstance(history[0], Mapping):
        y = np.asarray([float(v) for v in history], dtype=float)
        return np.arange(len(y)), y, None
    key = y_key
    if key is None:
        numeric = [k for k, v in history[0].items() if k != x_key and isinstance(v, (int, float))]
        key = "loss" if "loss" in history[0] else (numeric[0] if numeric else None)
    rows = [r for r in history if key in r and r[key] is not None]
    if not rows:
        raise ValueError(f"no {key!r} values in the history (its keys: {sorted(history[0])}).")
    y = np.asarray([float(r[key]) for r in rows], dtype=float)
    x = np.asarray([r.get(x_key, i) for i, r in enumerate(rows)], dtype=float)
    return x, y, key


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < 2:
        return y
    # trailing moving average that does not shrink the series
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_loss_curves(histories: Mapping[str, Sequence[float] | Sequence[Mapping[str, float]]], ylabel: str = "loss",
                     logy: bool = False, ax=None, y_key: str | None = None, x_key: str = "step",
                     xlabel: str | None = None, smooth: int = 1, title: str | None = None):
    """One line per named history, e.g. ``{"decoder-only": losses, "encoder-decoder": losses2}``.

    A history is a list of numbers (x = index) or a list of dicts (x = ``x_key``, default
    ``"step"``; y = ``y_key``, default ``"loss"`` when present, else the first numeric key).
    ``smooth=k`` draws a trailing k-point moving average (the raw curve stays, faint).
    """
    fig, ax = _new_axes(ax, None)
    used_dicts = False
    for name, history in histories.items():
        x, y, key = _series(history, y_key, x_key)
        used_dicts |= key is not None
        if smooth > 1:
            (line,) = ax.plot(x, y, alpha=0.25, linewidth=0.8)
            ax.plot(x, _smooth(y, smooth), color=line.get_color(), label=name)
        else:
            ax.plot(x, y, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or (x_key if used_dicts else "step"))
    ax.set_ylabel(ylabel)
    if histories:
        ax.legend()
    if title:
        ax.set_title(title)
    return fig


def plot_bars(values: Mapping[str, float] | Mapping[str, Mapping[str, float]], ylabel: str = "",
              title: str | None = None, ax=None, errors: Mapping | None = None, fmt: str = "{:.3g}",
              annotate: bool = True, logy: bool = False):
    """Bar chart for comparisons.

    ``{"encoder": 1.2, "decoder": 3.4}`` -> one bar each; a nested dict
    ``{"prefill": {"dec-only": 1, "enc-dec": 2}, "decode": {...}}`` -> grouped bars, one colour per
    inner key. ``errors`` has the same shape (error-bar half-widths). ``annotate`` writes the values.
    """
    fig, ax = _new_axes(ax, None)
    groups = list(values)
    nested = bool(groups) and isinstance(values[groups[0]], Mapping)
    if not nested:
        heights = [float(values[g]) for g in groups]
        errs = [float(errors[g]) for g in groups] if errors else None
        bars = ax.bar(np.arange(len(groups)), heights, yerr=errs, capsize=3 if errs else 0)
        if annotate:
            ax.bar_label(bars, labels=[fmt.format(h) for h in heights], fontsize=7, padding=2)
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(groups)
    else:
        series = list(dict.fromkeys(k for g in groups for k in values[g]))
        width = 0.8 / max(1, len(series))
        for i, s in enumerate(series):
            xs = np.arange(len(groups)) - 0.4 + width * (i + 0.5)
            heights = [float(values[g].get(s, np.nan)) for g in groups]
            errs = [float(errors[g].get(s, 0.0)) for g in groups] if errors else None
            bars = ax.bar(xs, heights, width=width, yerr=errs, capsize=3 if errs else 0, label=s)
            if annotate:
                ax.bar_label(bars, labels=["" if np.isnan(h) else fmt.format(h) for h in heights],
                             fontsize=7, padding=2)
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(groups)
        ax.legend()
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig
