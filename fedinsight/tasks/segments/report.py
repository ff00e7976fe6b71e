"""The segments section of the run report: each segment in words, its noisy size and 95 % interval.

Sizes below the job's minimum group size (decided on the noisy size: post-processing) are shown as
"suppressed"; shares are taken over the reported segments only, so a hidden size cannot be recovered by
subtraction.
"""

from __future__ import annotations

from typing import Any

from fedinsight.report.charts import Chart, bars_with_intervals, figure, render
from fedinsight.report.page import Section, card, esc, table
from fedinsight.tasks.segments.features import feature


def segments_sections(summary: dict[str, Any]) -> tuple[list[str], list[Section]]:
    segments = summary.get("segments") or []
    if not segments:
        return [], []
    shown = [s for s in segments if not s.get("suppressed")]
    total = sum(s["size"] for s in shown) or 1.0
    names = summary.get("features") or []
    cards = [card("segments", str(len(segments)), f"{summary.get('suppressed_segments', 0)} suppressed")]
    ratio = (summary.get("baselines") or {}).get("cost_ratio")
    if ratio is not None:
        cards.append(card("k-means cost vs non-private", f"{ratio:.2f}x", "same pooled customers (simulation)",
                          good=ratio <= 1.5))
    rows = []
    for s in segments:
        typical = ", ".join(f"{feature(n).unit} ~{v:.0%}" if feature(n).share else f"{feature(n).unit} ~{v:,.0f}"
                            for n, v in (s.get("typical") or {}).items())
        if s.get("suppressed"):  # too small to describe to a marketer: no words, no typical customer either
            rows.append([s["segment"], "(under the minimum group size)", "suppressed", "", "", ""])
            continue
        size = f"{s['size']:,.0f}"
        interval = f"{s['ci95'][0]:,.0f} – {s['ci95'][1]:,.0f}"
        share = f"{s['size'] / total:.0%}"
        rows.append([s["segment"], s["words"], size, interval, share, typical])
    section = Section("segments", "Customer segments")
    section.charts([_sizes_chart(segments)])
    section.add(table(["segment", "in words", "customers (noisy)", "95 % interval", "share of shown", "typical "
                       "customer (centre)"], rows))
    centre_rows = [[s["segment"], *s["centre"]] for s in segments if not s.get("suppressed")]
    section.add("<h3>Centres (features scaled to [0, 1])</h3>" + table(["segment", *names], centre_rows))
    caps = "; ".join(f"{n}: {feature(n).unit}" if feature(n).share else
                     f"{n}: log1p({feature(n).unit}) / log1p({feature(n).cap:g})" for n in names)
    as_of = summary.get("as_of")
    note = (f"Customers with a purchase before {as_of}. Features: {caps} (recency reversed: 1 = bought on the "
            "reference date). Sizes are sums of every partner's Gaussian-noised counts; segments whose noisy size "
            "is under the minimum group size are not shown. Words: high above 2/3, low below 1/3.")
    section.add(f'<p class="note">{esc(note)}</p>')
    for line in [*choice_lines(summary.get("k_choice") or {}), *(summary.get("notes") or [])]:
        section.add(f"<p>{esc(line)}</p>")
    return cards, [section]


def choice_lines(choice: dict[str, Any]) -> list[str]:
    """How the number of segments was chosen (``--k-range``), in words: the rule, each k's cost, its privacy cost."""
    if not choice:
        return []
    lo, hi = choice["range"]
    costs = choice["costs"]
    first = costs[min(costs, key=int)] or 1.0
    values = ", ".join(f"{k}: {v / first:.2f}" for k, v in sorted(costs.items(), key=lambda kv: int(kv[0])))
    return [f"Number of segments chosen between {lo} and {hi}: {choice['chosen']}, the {choice['rule']}. "
            f"Relative cost for each number of segments (1.00 = the fewest): {values}. The choice reuses the "
            f"job's first noisy release, so it cost no extra privacy budget (epsilon {choice['epsilon']:g})."]


def _sizes_chart(segments: list[dict[str, Any]]) -> Chart:
    """Segment sizes as bars with their 95 % intervals (suppressed ones as hatched placeholders, no number)."""
    labels = [str(s["segment"]) for s in segments]
    sizes = [None if s.get("suppressed") else {"value": s["size"], "ci95": s["ci95"]} for s in segments]
    with figure("segments-sizes", 6.4, 3.2) as (fig, (ax,)):
        bars_with_intervals(ax, labels, {"customers": sizes}, ylabel="customers (noisy)")
        words = "; ".join(f"{s['segment']}: {s['words']}" for s in segments if not s.get("suppressed"))
        return render("segments-sizes", "Customers per segment", fig,
                      f"Noisy segment sizes with 95 % intervals. {words}.")
