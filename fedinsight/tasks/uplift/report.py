"""The uplift section of the run report: who an offer really moves, and which offer to send to whom.

In a marketer's words: the Qini coefficient says how much better than random the model ranks customers by how
much an offer changes their buying; "top 30 % vs random" is how many more extra conversions the campaign gets by
sending the offer to the 30 % the model ranks highest instead of 30 % picked at random. The policy table counts
customers per recommended offer and value tier (noisy, with 95 % intervals; small cells hidden).
"""

from __future__ import annotations

from typing import Any

from fedinsight.report.charts import figure, render, tooltip
from fedinsight.report.page import Section, card, esc, table


def _fmt(value: object, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def uplift_sections(summary: dict[str, Any]) -> tuple[list[str], list[Section]]:
    metrics = (summary.get("metrics") or {}).get("federated") or {}
    if not metrics:
        return [], []
    base = summary.get("baselines") or {}
    cards, rows = [], []
    top = float(next(iter(metrics.values())).get("top_share", 0.3))
    for offer, m in metrics.items():
        ratio = m.get("top_vs_random")
        cards.append(card(f"{offer}: top {m['top_share']:.0%} vs random", _fmt(ratio, 2) + "x",
                          f"Qini {_fmt(m.get('qini'))} (DP release)", good=None if ratio is None else ratio >= 1.5))
        rows.append([offer, _fmt(m.get("qini")),
                     _fmt((base.get("federated_exact") or {}).get(offer, {}).get("qini")),
                     _fmt((base.get("centralized") or {}).get(offer, {}).get("qini")),
                     _fmt((base.get("random") or {}).get(offer, {}).get("qini")), _fmt(ratio, 2)])
    section = Section("uplift", f"Uplift: who the offers of '{summary.get('campaign')}' really move")
    section.add(table(["offer", "Qini (federated, DP release)", "Qini (released model, exact; simulation)",
                       "Qini (centralized, non-private; simulation)", "Qini (random targeting; simulation)",
                       f"top {top:.0%} vs random"], rows))
    with figure("uplift-qini") as (fig, axes):
        ax = axes[0]
        for offer, m in metrics.items():
            ax.plot(m["curve"]["share"], m["curve"]["gain"], lw=1.2, label=f"{offer} (model)")
            for share, gain in zip(m["curve"]["share"], m["curve"]["gain"], strict=True):
                dot = ax.scatter([share], [gain], s=12, color=ax.lines[-1].get_color(), zorder=3)
                tooltip(dot, f"{offer}: targeting the top {share:.0%} gives {gain:,.0f} extra conversions "
                             "(held-out, noisy)", area=True)
            ax.plot([0, 1], [0, m["curve"]["gain"][-1]], ls="--", lw=1, label=f"{offer} (random)")
        ax.set_xlabel("share of customers targeted, highest predicted uplift first")
        ax.set_ylabel("extra conversions (held-out)")
        ax.legend(fontsize=8)
        sd = next(iter(metrics.values())).get("cell_noise_sd")
        chart = render("uplift-qini", "Uplift (Qini) curves", fig,
                       "Extra conversions among the targeted customers against the hold-out, from every partner's "
                       "noisy counts on its held-out customers"
                       + (f" (each summed count carries Gaussian noise of sd {sd:.0f}: on a small held-out set the "
                          "curve is mostly noise)." if isinstance(sd, int | float) else "."))
    section.charts([chart])
    pol = summary.get("policy") or {}
    prow = [[c["offer"], c["tier"], "suppressed" if c["suppressed"] else f"{c['customers']:,.0f}",
             "" if c["suppressed"] else f"{c['ci95'][0]:,.0f} – {c['ci95'][1]:,.0f}"] for c in pol.get("cells", [])]
    section.add("<h3>Offer policy: recommended offer by value tier</h3>"
                + table(["recommended offer", "value tier", "customers (noisy)", "95 % interval"], prow))
    money = summary.get("economics") or {}
    if money:
        def cell(figure: dict[str, Any] | None, digits: int = 0) -> str:
            if not figure or figure.get("value") is None:
                return "-"
            ci = figure.get("ci95")
            text = f"{figure['value']:,.{digits}f}"
            return text + (f" ({ci[0]:,.{digits}f} – {ci[1]:,.{digits}f})" if ci else "")

        erows = [[offer, *(["suppressed (an arm under the minimum group size)", "", "", "", ""] if f.get("suppressed")
                           else [cell(f.get("incremental_conversions")), cell(f.get("incremental_revenue")),
                                 cell(f.get("cost")), cell(f.get("cpa"), 2), cell(f.get("roi"), 2)])]
                 for offer, f in money.items()]
        section.add("<h3>Campaign economics against the hold-out (95 % intervals include the DP noise)</h3>"
                    + table(["offer", "extra conversions", "extra revenue", "cost", "cost per extra conversion "
                             "(CPA = CAC)", "ROI"], erows))
    costs = ", ".join(f"{k} {v:g}" for k, v in (pol.get("costs") or {}).items())
    edges = pol.get("tier_edges") or []
    prior = pol.get("order_value_prior")
    usual = (f"usual order value, capped at {pol.get('order_value_cap', 0):g} and blended with a typical order of "
             f"{prior:g} counted as {pol.get('order_value_weight', 0):g} orders" if prior is not None else
             f"usual order value, capped at {pol.get('order_value_cap', 0):g}")
    note = (f"Each customer gets the offer whose expected extra value (predicted uplift x {usual}, minus the "
            f"offer's cost: {costs}) is largest, or none when no offer pays for itself. Value tiers by spend in the "
            f"year before the campaign: mid from "
            f"{edges[0] if edges else '-'}, high from {edges[1] if len(edges) > 1 else '-'}. Counts are sums of "
            "every partner's Gaussian-noised counts; cells under the minimum group size are hidden. Partners export "
            "their own target lists on their own machines.")
    section.add(f'<p class="note">{esc(note)}</p>')
    section.add(f'<p class="note">{esc(_training_noise(summary.get("noise") or {}))}</p>')
    return cards, [section]


def _training_noise(noise: dict[str, Any]) -> str:
    """Who added the model's training noise, and whom that trusts, in words."""
    if noise.get("noise_model") == "distributed-secagg":
        return ("How the model was trained: each round, every partner sent its customers' clipped updates with a "
                "share of the privacy noise, hidden by secure aggregation; the coordinator saw only the partners' "
                f"total, which carries the full noise. Trust model: {noise.get('trust_model', '-')}.")
    return ("How the model was trained: every partner trained on its own customers and added the full privacy noise "
            "to its own update (no trust in anyone needed).")
