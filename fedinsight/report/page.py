"""The report page: one self-contained HTML file (inline CSS and SVG, no script, no external request).

Why no JavaScript: nothing to load, nothing to execute when a compliance officer opens a file they
were mailed, and it prints cleanly. Everything the reader sees is built here from escaped text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedinsight.report.charts import Chart

CSS = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#e3e6ec; --accent:#1f77b4; --ok:#2e7d32; --bad:#c62828; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; background: #f6f7f9; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: var(--muted); }
nav { padding: 8px 28px; background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; }
main { padding: 8px 28px 40px; max-width: 1180px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 20px; margin: 18px 0; }
section h2 { margin: 0 0 8px; font-size: 17px; }
section h3 { margin: 14px 0 6px; font-size: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 170px; }
.card .label { color: var(--muted); font-size: 12px; }
.card .value { font-size: 20px; font-weight: 600; }
.card .sub { color: var(--muted); font-size: 12px; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 14px; }
.kv { columns: 3 260px; column-gap: 28px; font-size: 12.5px; }
.kv div { break-inside: avoid; border-bottom: 1px solid var(--line); padding: 2px 0; display: flex;
          justify-content: space-between; gap: 10px; }
.kv span:first-child { color: var(--muted); }
figure.chart { margin: 6px 0; }
figure.chart figcaption { color: var(--muted); font-size: 12px; }
figure.chart .chart-title { font-weight: 600; font-size: 13px; margin-bottom: 2px; }
svg.chart-svg { max-width: 100%; height: auto; display: block; }
svg.chart-svg * { pointer-events: none; }  /* whiskers, caps, arrows, gridlines never hide a value's tooltip */
svg.chart-svg g.tip { pointer-events: visiblePainted; }  /* an invisible heatmap cell's own style says "all" */
svg.chart-svg g.tip * { pointer-events: inherit; }
svg.chart-svg g.tip:hover path { opacity: 0.85; stroke: #111; stroke-width: 1.2px; }  /* the hovered mark */
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
th { background: #fafbfc; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background: #f3f4f6; padding: 10px; border-radius: 6px; overflow-x: auto; white-space: pre-wrap; }
.note { color: var(--muted); font-size: 12.5px; }
.suppressed { color: #8a6d00; }
details summary { cursor: pointer; color: var(--accent); }
@media print { nav { display: none; } section { break-inside: avoid; } }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 4) -> str:
    """A number for a table cell: fixed significant digits, '–' for missing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, css: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c)) if not isinstance(c, Raw) else c.html}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f'<table class="{esc(css)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclass(frozen=True)
class Raw:
    """Already-built HTML for a table cell (everything else is escaped)."""

    html: str


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    """Many settings in a compact multi-column list (a long two-column table wastes the page)."""
    items = "".join(f"<div><span>{esc(k)}</span><span>{esc(fmt(v))}</span></div>" for k, v in pairs)
    return f'<div class="kv">{items}</div>'


def card(label: str, value: str, sub: str = "", *, good: bool | None = None) -> str:
    tone = "" if good is None else (" ok" if good else " bad")
    return (f'<div class="card"><div class="label">{esc(label)}</div><div class="value{tone}">{esc(value)}</div>'
            f'<div class="sub">{esc(sub)}</div></div>')


def figure_html(chart: Chart) -> str:
    return (f'<figure class="chart" id="chart-{esc(chart.name)}" data-chart="{esc(chart.name)}">'
            + (f'<div class="chart-title">{esc(chart.title)}</div>' if chart.title else "") + f"{chart.svg}"
            f'<figcaption>{esc(chart.caption)}</figcaption></figure>')


@dataclass
class Section:
    """One block of the page; ``parts`` are HTML fragments, charts are laid out in a grid."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)

    def add(self, fragment: str) -> None:
        self.parts.append(fragment)

    def charts(self, charts: Sequence[Chart]) -> None:
        if charts:
            self.parts.append('<div class="grid">' + "".join(figure_html(c) for c in charts) + "</div>")

    def html(self) -> str:
        return f'<section id="{esc(self.id)}"><h2>{esc(self.title)}</h2>{"".join(self.parts)}</section>'


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
            f"<main>{''.join(s.html() for s in sections)}</main></body></html>\n")


def currency_code(summary: dict[str, Any]) -> str | None:
    """The run's reporting currency (``summary["currency"]["reporting"]``), or ``None`` when amounts are as held."""
    record = summary.get("currency")
    return str(record["reporting"]) if isinstance(record, dict) and record.get("reporting") else None


def money_label(summary: dict[str, Any], label: str) -> str:
    """``label`` naming the currency its amounts are in (``mean spend (USD)``), so no figure's unit is guessed."""
    code = currency_code(summary)
    return f"{label} ({code})" if code else label
