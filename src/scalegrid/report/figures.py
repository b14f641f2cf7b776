"""Figures: one look for every plot of a report, each saved as PNG (for HTML and Markdown) and SVG.

Matplotlib runs headless (Agg) and is imported only here, when the first figure is drawn (`plt()`):
planning a sweep never pays for it. The conventions, so that every figure
reads the same way: measured points are markers joined by thin solid lines; a fitted law is a
dashed line of the same colour; an asymptote is a dotted horizontal line labelled with its value.
Ordered series (token budgets, sizes) take colours from one sequential colormap, small to large.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PNG_DPI = 150
STYLE = {
    "figure.figsize": (6.4, 4.2),
    "figure.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "lines.linewidth": 1.3,
    "lines.markersize": 5,
    # no "savefig.bbox": "tight": constrained layout already fits the figure, and tight bbox
    # costs one more full draw per file
    "svg.fonttype": "none",  # text stays text in the SVG: searchable, smaller
    "svg.hashsalt": "scalegrid",  # stable SVG ids: the same results give the same files
}
FIT_STYLE = {"linestyle": "--", "linewidth": 1.2}


@functools.cache
def plt():
    """matplotlib.pyplot, headless: Agg chosen before pyplot is first imported."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display, no GUI toolkit
    import matplotlib.pyplot

    return matplotlib.pyplot


def FuncFormatter(function):  # noqa: N802 - matplotlib's class, made on first use
    from matplotlib.ticker import FuncFormatter as formatter

    return formatter(function)


def NullFormatter():  # noqa: N802 - matplotlib's class, made on first use
    from matplotlib.ticker import NullFormatter as formatter

    return formatter()


def LogLocator(**options):  # noqa: N802 - matplotlib's class, made on first use
    from matplotlib.ticker import LogLocator as locator

    return locator(**options)
ASYMPTOTE_STYLE = {"linestyle": ":", "linewidth": 1.1}


@dataclass(frozen=True)
class Figure:
    """A saved figure: `name` is the file stem under figures/ (name.png and name.svg)."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def new_figure(ncols: int = 1, *, width: float | None = None, height: float = 3.8):
    """A figure with `ncols` axes side by side, in the report's style."""
    with plt().rc_context(STYLE):
        fig, axes = plt().subplots(
            1, ncols, figsize=(width or 5.6 * ncols ** 0.9, height), squeeze=False, layout="constrained"
        )
    for ax in axes[0]:
        _style_axes(ax)
    return fig, list(axes[0])


def new_panels(n: int, *, max_cols: int | None = None, panel_width: float = 3.9, panel_height: float = 3.2):
    """A grid of n panels, at most `max_cols` a row; the unused cells of the last row are hidden."""
    if max_cols is None:
        max_cols = 2 if n in (2, 4) else 3  # 4 panels read better as 2 x 2 than as 3 + 1
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    with plt().rc_context(STYLE):
        fig, axes = plt().subplots(
            rows, cols, figsize=(panel_width * cols + 1.6, panel_height * rows + 0.3), squeeze=False,
            layout="constrained",
        )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    for ax in flat[:n]:
        _style_axes(ax)
    return fig, flat[:n]


def _style_axes(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color=STYLE["grid.color"], linewidth=STYLE["grid.linewidth"], which="major")
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8.5)


def save(fig, out_dir: Path, name: str, title: str, caption: str) -> Figure:
    """Write figures/<name>.png and .svg and close the figure."""
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    png, svg = fig_dir / f"{name}.png", fig_dir / f"{name}.svg"
    try:
        for ax in fig.axes:
            _spread_labels(ax)
        with plt().rc_context(STYLE):
            fig.savefig(png, dpi=PNG_DPI, metadata={"Software": None})
            fig.savefig(svg, metadata={"Date": None, "Creator": None})
    finally:
        plt().close(fig)
    return Figure(name=name, title=title, caption=caption, png=png, svg=svg)


def legend_below(fig, ax, *, extra: list | None = None, ncols: int = 4) -> None:
    """The axes' legend (plus `extra` style keys) under the plot, clear of data and labels."""
    handles = ax.get_legend_handles_labels()[0] + list(extra or [])
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(ncols, len(handles)), frameon=False)


def focus_ylim(ax, points, asymptotes=(), *, below: float = 1.2, above: float = 0.15) -> list[float]:
    """Y limits that show the measured points and the asymptotes near them, not a far-off one.

    Error bars and fits may reach beyond; returns the asymptotes left out of view (say so in the
    caption or a note: their values are in the tables)."""
    values = np.asarray([p for p in points if p is not None and np.isfinite(p)], dtype=float)
    if values.size == 0:
        return []
    lo, hi = float(values.min()), float(values.max())
    span = max(hi - lo, 0.02 * max(abs(hi), 1e-9), 1e-6)
    floor = lo - below * span
    shown = [a for a in asymptotes if a is not None and np.isfinite(a) and a >= floor]
    hidden = [a for a in asymptotes if a is not None and np.isfinite(a) and a < floor]
    bottom = min([lo] + shown) - 0.08 * span
    ax.set_ylim(bottom, hi + above * span)
    return hidden


def _spread_labels(ax, min_gap_pt: float = 9.0) -> None:
    """Move the asymptote labels at the right edge apart where they would overlap."""
    lo, hi = ax.get_ylim()
    labels = [t for t in ax.texts if getattr(t, "_scalegrid_asymptote", False) and lo <= t.xy[1] <= hi]
    if len(labels) < 2:
        return
    height_pt = ax.get_window_extent().height * 72.0 / ax.figure.dpi
    if height_pt <= 0 or hi <= lo:
        return
    to_pt = height_pt / (hi - lo)
    labels.sort(key=lambda t: t.xy[1])
    placed: list[float] = []
    for t in labels:
        y = (t.xy[1] - lo) * to_pt
        if placed and y < placed[-1] + min_gap_pt:
            y = placed[-1] + min_gap_pt
        placed.append(y)
        t.set_position((2, y - (t.xy[1] - lo) * to_pt))  # offset in points from its line


def close_all() -> None:
    plt().close("all")


def legend_outside(fig, axes, *, extra: list | None = None) -> None:
    """One legend for a panel figure, right of the panels: the first axes' entries + `extra`."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    for h in extra or []:
        handles.append(h)
        labels.append(h.get_label())
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8.5, frameon=False)


def style_keys(*, fit: str | None = "fitted law", asymptote: str | None = "asymptote") -> list:
    """Grey legend entries that explain the line styles (dashed fit, dotted asymptote)."""
    from matplotlib.lines import Line2D

    keys = []
    if fit:
        keys.append(Line2D([], [], color="#555555", label=fit, **FIT_STYLE))
    if asymptote:
        keys.append(Line2D([], [], color="#555555", label=asymptote, **ASYMPTOTE_STYLE))
    return keys


def plain_formatter():
    """Tick labels as plain numbers (0.1, 0.8, 16), not 10^-1 or 8 x 10^-1."""
    return FuncFormatter(lambda v, _: f"{v:g}")


def colors(n: int, cmap: str = "viridis") -> list:
    """n colours of a sequential map, avoiding its palest end (unreadable on white)."""
    if n <= 0:
        return []
    positions = [0.5] if n == 1 else list(np.linspace(0.05, 0.85, n))
    import matplotlib

    return [matplotlib.colormaps[cmap](p) for p in positions]


def human(value: float, unit: str = "") -> str:
    """150M, 1.4B, 32k: counts the way papers write them."""
    if value is None or not np.isfinite(value):
        return "n/a"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            text = f"{value / scale:.3g}{suffix}"
            break
    else:
        text = f"{value:.3g}"
    return f"{text}{(' ' + unit) if unit else ''}"


def log_x_axis(ax, values=None, label: str | None = None) -> None:
    """A log x axis whose ticks read 150M, 300M, ...; ticks at the data's values when few."""
    ax.set_xscale("log")
    formatter = FuncFormatter(lambda v, _: human(v))
    ax.xaxis.set_major_formatter(formatter)
    values = sorted({float(v) for v in (values if values is not None else []) if v and np.isfinite(v)})
    if 1 <= len(values) <= 8:
        ax.set_xticks(values)
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if label:
        ax.set_xlabel(label)


def log2_x_axis(ax, values, label: str | None = None) -> None:
    """A base-2 log axis for doubling grids (epochs, members): ticks at the data's values."""
    ax.set_xscale("log", base=2)
    values = sorted({float(v) for v in values if v and np.isfinite(v)})
    if len(values) > 9:  # a dense grid: ticks at the powers of two it spans
        values = [2.0**e for e in range(int(np.floor(np.log2(values[0]))), int(np.ceil(np.log2(values[-1]))) + 1)]
    if values:
        ax.set_xticks(values)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if label:
        ax.set_xlabel(label)


def asymptote(ax, value: float, color, label: str | None = None, *, annotate: str | None = None) -> None:
    """A dotted horizontal line at `value`, optionally with its value written at the right end."""
    if value is None or not math.isfinite(value):
        return
    ax.axhline(value, color=color, label=label, alpha=0.9, **ASYMPTOTE_STYLE)
    if annotate:
        text = ax.annotate(
            annotate, xy=(1.0, value), xycoords=("axes fraction", "data"), xytext=(2, 0),
            textcoords="offset points", va="center", ha="left", fontsize=7.5, color=color,
            annotation_clip=True,
        )
        text._scalegrid_asymptote = True


def fit_line(ax, x: np.ndarray, y: np.ndarray, color, label: str | None = None) -> None:
    ax.plot(x, y, color=color, label=label, **FIT_STYLE)


def dense_log(lo: float, hi: float, extend: float = 1.0, n: int = 200) -> np.ndarray:
    """Points evenly spaced in log between lo and hi * extend (a fit drawn a bit past the data)."""
    return np.geomspace(lo, hi * extend, n)


def no_data(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="#666666")
