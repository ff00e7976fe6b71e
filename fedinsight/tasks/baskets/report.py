"""The baskets section of the run report: the top "bought together" rules in words, with their intervals.

Only released (not suppressed) pairs appear; shares are of the customers with a purchase (itself a noisy,
released count). Lift is explained in the note, since it is the figure a marketer acts on.
"""

from __future__ import annotations

from typing import Any

from fedinsight.report.charts import Chart, figure, render, tooltip
from fedinsight.report.page import Section, card, esc, table


def _pct(v: float) -> str:
    return f"{v:.1%}"


def baskets_sections(summary: dict[str, Any]) -> tuple[list[str], list[Section]]:
    items = summary.get("items")
    if items is None:
        return [], []
    rules = summary.get("rules") or []
    customers = summary.get("customers")
    cards = [card("customers with a purchase", "suppressed" if customers is None else f"~{customers:,.0f}",
                  "noisy count"),
             card("items compared", str(len(items)), f"{summary.get('suppressed_items', 0)} suppressed"),
             card("pairs shown", str(len(summary.get("pairs") or [])),
                  f"{summary.get('suppressed_pairs', 0)} under the minimum group size")]
    base = summary.get("baselines") or {}
    if base.get("support_error_pp_max") is not None:
        cover = base.get("support_ci95_coverage")
        cards.append(card("largest support error vs exact", f"{base['support_error_pp_max']:.2f} pp",
                          "simulation only" + (f"; intervals covered {cover:.0%}" if cover is not None else ""),
                          good=base["support_error_pp_max"] <= 1.0))
    section = Section("baskets", "Bought together")
    pairs = summary.get("pairs") or []
    shown_pairs = rules or sorted(pairs, key=lambda p: -p["lift"])[: int(summary.get("settings", {}).get("top", 20))]
    rows = []
    for r in shown_pairs:
        a, b = r["items"]
        lo, hi = r["lift_ci95"]
        rows.append([f"{a} + {b}", f"{r['lift']:.2f}x", f"{lo:.2f} – {hi:.2f}", _pct(r["support"]),
                     f"{_pct(r['confidence'])} of {a} buyers", f"{_pct(r['confidence_reverse'])} of {b} buyers",
                     f"~{r['customers']:,.0f}"])
    if pairs and not rules:
        section.add("<p>No pair is bought together clearly more often than by chance, given the privacy noise: the "
                    "pairs below are the released ones with the highest lift, each to be read with its interval.</p>")
    if rows:
        section.charts([_lift_chart(shown_pairs)])
        section.add(table(["bought together", "lift", "lift 95 % interval", "of all customers", "also bought the "
                           "second", "also bought the first", "customers (noisy)"], rows))
    else:
        section.add("<p>No pair of items reached the minimum group size.</p>")
    shown = [[i["item"], f"~{i['customers']:,.0f}", _pct(i["share"])] for i in items if not i.get("suppressed")]
    if shown:
        section.add("<h3>Items compared</h3>" + table(["item", "customers (noisy)", "share of customers"], shown))
    note = (f"Each customer's basket is the set of items they bought, cut to their {summary.get('max_items')} most "
            "bought. Lift says how many times more often two items are bought by the same customer than if they "
            "were unrelated: 1 means no link, 2 means twice as often. Rules are ranked by the low end of the lift's "
            "95 % interval, so a pair only tops the list when the link is clear despite the privacy noise. Counts "
            "are sums of every partner's Gaussian-noised counts; items and pairs with fewer noisy customers than "
            "the minimum group size are not shown.")
    section.add(f'<p class="note">{esc(note)}</p>')
    return cards, [section]


def _lift_chart(pairs: list[dict[str, Any]]) -> Chart:
    """Each shown pair's lift as a point with its 95 % interval, highest first, against the no-link line at 1."""
    with figure("baskets-lift", 6.4, 0.9 + 0.28 * len(pairs)) as (fig, (ax,)):
        for row, p in enumerate(pairs):
            lo, hi = p["lift_ci95"]
            ax.plot([lo, hi], [row, row], color="#777777", lw=1.5, solid_capstyle="butt")
            dot = ax.scatter([p["lift"]], [row], s=28, color="#1f77b4", zorder=3)
            a, b = p["items"]
            tooltip(dot, f"{a} + {b}: lift {p['lift']:.2f} (95 % interval {lo:.2f} to {hi:.2f})", area=True)
        ax.axvline(1.0, color="#aa3333", lw=1, ls="--")
        ax.set_yticks(range(len(pairs)), [f"{p['items'][0]} + {p['items'][1]}" for p in pairs])
        ax.invert_yaxis()
        ax.set_xlabel("lift (1 = bought together no more often than by chance)")
        return render("baskets-lift", "Bought together: lift with 95 % intervals", fig,
                      "How many times more often each pair is bought by the same customer than if the items were "
                      "unrelated; the dashed line marks no link.")
