"""Charts of the run report, rendered by matplotlib to static SVG that is inlined into the page.

Why static SVG: the report must open with no network (a compliance officer's laptop, an air-gapped
coordinator), so no JavaScript chart library is fetched; SVG stays sharp when zoomed and printed.
Each chart is a :class:`Chart` the page wraps in ``<figure class="chart">``; the browser test checks
every one of them rendered.

Conventions: the federated model is always drawn in the same blue, baselines in greys/orange, so a
reader can compare charts at a glance; intervals are 95 % and drawn as error bars; suppressed groups
are drawn as hatched grey placeholders, never as zeros.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape

import matplotlib
import matplotlib.artist
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")  # no display on a coordinator; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = {"federated": "#1f77b4", "centralized": "#555555", "bgnbd": "#ff7f0e", "popularity": "#ff7f0e",
           "local_only": "#9467bd", "federated_global": "#17becf", "budget": "#d62728"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SUPPRESSED_STYLE = {"facecolor": "#dddddd", "hatch": "///", "edgecolor": "#999999"}


@dataclass(frozen=True)
class Chart:
    """One rendered chart: a stable name (anchor and test hook), a title, the SVG and a caption."""

    name: str
    title: str
    svg: str
    caption: str = ""


def integer_ticks(ax: plt.Axes) -> None:
    """Rounds are whole numbers: no 1.25 on the x axis."""
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, min_n_ticks=1))


def colour(name: str, index: int = 0) -> str:
    return COLOURS.get(name, PALETTE[index % len(PALETTE)])


def _ignore_missing_glyphs() -> None:
    """Text stays text in the SVG (svg.fonttype none): the browser draws a partner called "華東 retail" with its own
    fonts. Matplotlib only measures the label, and warns when its default font lacks a glyph: not a defect here."""
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)


@contextmanager
def figure(name: str, width: float = 6.4, height: float = 3.6, ncols: int = 1) -> Iterator[tuple]:
    """A matplotlib figure whose SVG ids are unique to ``name`` (several SVGs share one page's id space)."""
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": name, "font.size": 9, "axes.titlesize": 10,
                         "axes.spines.top": False, "axes.spines.right": False}), warnings.catch_warnings():
        _ignore_missing_glyphs()  # a task's own tight_layout() measures its labels too
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
        fig.set_gid(re.sub(r"[^A-Za-z0-9_-]", "-", name))  # the prefix of this figure's tooltip ids
        try:
            yield fig, axes[0]
        finally:
            plt.close(fig)


def tooltip(artist: matplotlib.artist.Artist, text: str, *, area: bool = False) -> None:
    """Hover text for one mark, written as an SVG ``<title>``.

    Why a ``<title>``: every browser shows it on hover with no JavaScript, so the page keeps its
    ``default-src 'none'`` policy and still lets a reader see a bar's exact value and interval. ``area``
    marks an invisible shape (a heatmap cell) that must still catch the pointer.
    """
    fig = artist.get_figure()
    tips: list[tuple[str, str, bool]] = fig.__dict__.setdefault("fedinsight_tips", [])  # (id, text, area)
    gid = f"{fig.get_gid() or 'chart'}-tip-{len(tips)}"
    artist.set_gid(gid)
    tips.append((gid, text, area))


def to_svg(fig: plt.Figure) -> str:
    """The figure as an inline ``<svg>`` element that scales with its container (tooltips included)."""
    buf = io.StringIO()
    with warnings.catch_warnings():
        _ignore_missing_glyphs()
        fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)  # creator/date RDF: bytes, no information
    for gid, text, area in fig.__dict__.get("fedinsight_tips", []):
        events = ' style="pointer-events: all"' if area else ""
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}" class="tip"{events}><title>{escape(text)}</title>', 1)
    # natural size (so every chart's text has the same size), shrunk by CSS when the column is narrower
    head_end = svg.index(">")
    return svg[:head_end] + ' class="chart-svg" role="img"' + svg[head_end:]


def render(name: str, title: str, fig: plt.Figure, caption: str = "") -> Chart:
    return Chart(name=name, title=title, svg=to_svg(fig), caption=caption)


# --- building blocks ---------------------------------------------------------------------------------

def finite(value: object) -> float | None:
    """A float, or None for missing / NaN / non-numbers (JSON null is how summaries store NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def number(value: float, percent: bool = False) -> str:
    """A value for a tooltip: a percentage, a whole thousands-separated number, or 4 significant digits."""
    if percent:
        return f"{value:.1%}"
    return f"{value:,.0f}" if abs(value) >= 999.5 else f"{value:.4g}"  # 999.7 is "1,000", not "1000"


def error_bars(values: Sequence[float], ci: Sequence[tuple[float, float]]) -> np.ndarray:
    """matplotlib's ``yerr`` (2 × n distances below / above) from absolute interval ends."""
    v = np.asarray(values, dtype=float)
    lo = np.asarray([c[0] for c in ci], dtype=float)
    hi = np.asarray([c[1] for c in ci], dtype=float)
    return np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])


def bars_with_intervals(ax: plt.Axes, labels: Sequence[str], series: dict[str, list[dict | None]], *,
                        ylabel: str = "", percent: bool = False) -> int:
    """Grouped bars, one group per label and one bar per series, with 95 % error bars.

    ``series[name][i]`` is a released estimate ``{"value", "ci95"}`` or None when suppressed (drawn as a
    hatched placeholder at the top of the axis, labelled). Returns how many bars were suppressed.
    """
    n_series = max(1, len(series))
    width = 0.8 / n_series
    x = np.arange(len(labels))
    suppressed = 0
    handles = []
    top = max((e["ci95"][1] for values in series.values() for e in values if e), default=1.0) or 1.0
    for k, (name, values) in enumerate(series.items()):
        pos = x - 0.4 + width * (k + 0.5)
        shown = [(p, e) for p, e in zip(pos, values, strict=True) if e]
        hidden = [p for p, e in zip(pos, values, strict=True) if not e]
        handles.append(matplotlib.patches.Patch(color=PALETTE[k % len(PALETTE)], label=name))
        where = [f"{label} · {name}" if len(series) > 1 else str(label) for label in labels]
        if shown:
            ps, es = zip(*shown, strict=True)
            vals = [e["value"] for e in es]
            bars = ax.bar(ps, vals, width * 0.95, color=PALETTE[k % len(PALETTE)],
                          yerr=error_bars(vals, [tuple(e["ci95"]) for e in es]), capsize=2, ecolor="#333333")
            shown_at = [i for i, e in enumerate(values) if e]
            for i, bar, e in zip(shown_at, bars.patches, es, strict=True):
                lo, hi = e["ci95"]
                tooltip(bar, f"{where[i]}: {number(e['value'], percent)} "
                             f"(95 % interval {number(lo, percent)} to {number(hi, percent)})")
        if hidden:
            suppressed += len(hidden)
            bars = ax.bar(hidden, [top * 0.12] * len(hidden), width * 0.95, **SUPPRESSED_STYLE)
            hidden_at = [i for i, e in enumerate(values) if not e]
            for i, bar in zip(hidden_at, bars.patches, strict=True):
                tooltip(bar, f"{where[i]}: suppressed (below the minimum group size)")
    if suppressed:
        handles.append(matplotlib.patches.Patch(label="suppressed", **SUPPRESSED_STYLE))
    ax.set_xticks(x, labels, rotation=30 if max((len(s) for s in labels), default=0) > 8 else 0, ha="right"
                  if max((len(s) for s in labels), default=0) > 8 else "center")
    ax.set_ylabel(ylabel)
    if percent:
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    if len(series) > 1 or suppressed:
        ax.legend(handles=handles if len(series) > 1 else handles[-1:], fontsize=7, frameon=False)
    return suppressed


def heatmap(ax: plt.Axes, values: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, label: str,
            vmax: float | None = None, group: str = "", unit: str = "customers") -> plt.cm.ScalarMappable:
    """A heatmap where NaN cells (suppressed) are hatched grey rather than coloured as zero.

    Every cell carries a tooltip (``group``, row, column: value and ``unit``, or "suppressed").
    """
    masked = np.ma.masked_invalid(values)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    image = ax.imshow(masked, aspect="auto", cmap=cmap, vmin=0, vmax=vmax)
    where = f"{group} · " if group else ""
    for (i, j), value in np.ndenumerate(values):
        if np.isnan(value):
            cell = matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                                edgecolor="#aaaaaa", linewidth=0)
            text = "suppressed (below the minimum group size)"
        else:  # an invisible cell over the image: the image itself is one bitmap and cannot hold a tooltip
            cell = matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, linewidth=0,
                                                clip_on=False)  # inside the axes anyway; no clip-path bytes
            text = f"{value:,.0f} {unit}"  # a noisy count, shown as a count
        ax.add_patch(cell)
        tooltip(cell, f"{where}{rows[i]} {cols[j]}: {text}", area=not np.isnan(value))
    ax.set_yticks(range(len(rows)), rows)
    step = 1 if len(cols) <= 12 else 6 if len(cols) <= 24 else max(1, len(cols) // 8)
    ax.set_xticks(range(0, len(cols), step), [cols[j] for j in range(0, len(cols), step)])
    ax.spines[:].set_visible(False)
    ax.set_title(label, fontsize=9)
    return image
