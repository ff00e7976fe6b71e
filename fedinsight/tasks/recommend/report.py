"""The recommender run's report sections.

HR@10 / NDCG@10 / coverage against the baselines, the exploration share's accuracy cost and diversity gain,
and the learning curve (or the privacy spent per round when per-round evaluation was switched off).

In a private job the federated numbers are means of the partners' *noised* sums (the evaluation is a DP
release like any other): the report says so next to them, with the noise's 95 % half-width and the epsilon the
evaluation releases cost, so nobody reads a noisy 0.41 as exactly 0.41. The baselines of a simulation are exact
(they run in the simulation driver, on data the partners never send).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedinsight.report.charts import Chart, colour, figure, finite, integer_ticks, render, tooltip
from fedinsight.report.learning import learning_chart, model_label, point_tips
from fedinsight.report.page import Section, card, esc, fmt, table

REC_MODELS = ("federated", "federated_global", "centralized", "local_only", "popularity")


def recommend_sections(summary: dict[str, Any]) -> tuple[list[str], list[Section]]:
    metrics = summary.get("metrics", {})
    fed, cen, pop = (metrics.get(k, {}) for k in ("federated", "centralized", "popularity"))
    cards = []
    hr_f, hr_c, hr_p = (finite(m.get("hr@10")) for m in (fed, cen, pop))
    noise = dp_note(fed)
    if hr_f is not None:
        ratio = hr_f / hr_c if hr_c else None
        detail = f"{ratio:.1%} of centralized ({hr_c:.3f})" if ratio else ""
        if noise:
            detail = f"± {fed['ci95_halfwidth']:.3f} (95 %, DP noise){'; ' + detail if detail else ''}"
        cards.append(card("federated HR@10", f"{hr_f:.3f}", detail, good=None if ratio is None else ratio >= 0.9))
    if hr_f is not None and hr_p is not None:
        cards.append(card("vs popularity", f"{hr_f - hr_p:+.3f} HR@10", f"popularity {hr_p:.3f}", good=hr_f > hr_p))
    explore = fed.get("explore", {})
    catalogue = summary.get("catalogue", {})
    diversity = str(catalogue.get("diversity") or "")
    unavailable = diversity.startswith("unavailable")
    if finite(explore.get("share")) is not None:
        gain = "diversity unavailable" if unavailable else f"diversity gain {fmt(finite(explore.get('ild_gain')), 3)}"
        cards.append(card("exploration share", f"{explore['share']:.0%} of slots",
                          f"HR cost {fmt(finite(explore.get('hr_cost')), 3)}, {gain}"))

    learning = Section("learning", "Learning curve")
    chart = _recommend_curve(summary)
    if chart:
        learning.charts([chart])
    else:
        learning.add('<p class="note">No per-round evaluation in this run (use --eval-every N to record one).</p>')

    quality = Section("model", "Recommendations")
    quality.charts([c for c in (_ranking_bars(metrics, summary), _explore_chart(metrics, summary)) if c])
    cols = ("hr@10", "ndcg@10", "coverage", "ild")
    rows = [[model_label(n, summary), *(finite(metrics[n].get(c)) for c in cols)] for n in REC_MODELS
            if isinstance(metrics.get(n), dict)]
    quality.add("<h3>Ranking metrics (latest interaction vs 99 unseen items)</h3>"
                + table(["model", "HR@10", "NDCG@10", "coverage", "intra-list diversity"], rows))
    if noise:
        quality.add(f'<p class="note">{esc(noise)}</p>')
    if diversity:
        quality.add(f'<p class="note">Intra-list diversity: {esc(diversity)}. Exploration slots: '
                    f'{esc(str(catalogue.get("exploration") or ""))}.</p>')
    rows = []
    for n in REC_MODELS:
        ex = metrics.get(n, {}).get("explore") if isinstance(metrics.get(n), dict) else None
        if ex:
            rows.append([model_label(n, summary), finite(metrics[n].get("hr@10")), finite(ex.get("hr@10")),
                         finite(ex.get("hr_cost")), finite(ex.get("ild_gain")), finite(ex.get("coverage_gain"))])
    if rows:
        quality.add("<h3>Exploration share: what it costs and what it buys</h3>"
                    + table(["model", "HR@10 without", "HR@10 with", "HR cost", "diversity gain", "coverage gain"],
                            rows))
    sections = [learning, quality]
    partners = per_partner_section(summary)
    if partners is not None:
        sections.append(partners)
    return cards, sections


PER_PARTNER_MODELS = (("served", "served (blend)"), ("federated_personal", "federated, personalised"),
                      ("partner_alone", "partner alone"), ("partner_popularity", "partner's popularity"))


def per_partner_section(summary: dict[str, Any]) -> Section | None:
    """Each partner's served blend against what it could do alone (simulations only: ``per_partner``)."""
    rows_in = {k: v for k, v in (summary.get("per_partner") or {}).items() if isinstance(v, dict)}
    if not rows_in:
        return None
    section = Section("partners", "Each partner: joining vs going alone")
    rows = []
    for name, row in sorted(rows_in.items()):
        hr = [finite((row.get(m) or {}).get("hr@10")) for m, _ in PER_PARTNER_MODELS]
        rows.append([name, row.get("customers"), row.get("blend_weight"), row.get("alone_model") or "-", *hr])
    section.add("<h3>HR@10 on each partner's own test customers</h3>"
                + table(["partner", "customers", "weight of the federated model", "alone model",
                         *(label for _, label in PER_PARTNER_MODELS)], rows))
    section.add('<p class="note">Each partner blends the federated model with the model it can train on its own '
                'customers, the weight chosen on its own validation customers; the choice never leaves the partner. '
                'Measured by the simulation, which plays every partner: a real partner releases none of these '
                'numbers.</p>')
    return section


def dp_note(block: dict[str, Any]) -> str:
    """What a noised federated block is, in one sentence ("": an exact, non-private evaluation)."""
    if not isinstance(block, dict) or not block.get("noised"):
        return ""
    half = finite(block.get("ci95_halfwidth"))
    eps = finite(block.get("epsilon"))
    return (f"Federated metrics are means of the partners' noised sums (Gaussian, OpenDP; each customer adds a value "
            f"in [0, 1] to each sum) over the {block.get('customers')} customers the partners counted in hello: "
            f"± {fmt(half, 3)} at 95 % from the noise alone. The {block.get('releases')} evaluation release(s) are "
            f"(ε {fmt(eps, 3)}, δ)-DP on their own and were charged with training in the job's ε (they compose in "
            f"RDP, so their share of it is smaller). Model evaluated: {block.get('model')}. "
            "Coverage is not released under DP (it would need per-item counts).")


def _recommend_curve(summary: dict[str, Any]) -> Chart | None:
    per_round = summary.get("metrics", {}).get("per_round", [])
    evaluated = [r for r in per_round if finite(r.get("hr@10")) is not None]
    if evaluated:
        return learning_chart(
            summary, evaluated, "hr@10", (("centralized", "--"), ("popularity", ":"), ("local_only", "-.")),
            name="recommend-learning", title="HR@10 per round", ylabel="HR@10", digits=3,
            caption="Shared model evaluated during training; lines: baselines on the same split.")
    spent = [r for r in per_round if finite(r.get("epsilon")) is not None]
    if not spent:
        return None
    target = finite(summary.get("privacy", {}).get("epsilon_target"))
    with figure("recommend-learning") as (fig, (ax,)):
        ax.plot([r["round"] for r in spent], [r["epsilon"] for r in spent], marker="o", ms=3,
                color=colour("federated"), label="ε spent (partners' accountants)")
        point_tips(ax, spent, "epsilon", "cumulative ε", 3)
        if target is not None:
            ax.axhline(target, color=colour("budget"), ls="--", label=f"job ε {target:g}")
        ax.set_xlabel("round")
        integer_ticks(ax)
        ax.set_ylabel("cumulative ε")
        ax.legend(fontsize=7, frameon=False)
        return render("recommend-learning", "Privacy spent per round", fig,
                      "No per-round ranking evaluation in this run: the chart shows ε accumulating instead.")


def _ranking_bars(metrics: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    names = [n for n in REC_MODELS if isinstance(metrics.get(n), dict) and finite(metrics[n].get("hr@10")) is not None]
    if not names:
        return None
    cols = ("hr@10", "ndcg@10", "coverage")
    with figure("recommend-ranking") as (fig, (ax,)):
        width = 0.8 / len(names)
        x = np.arange(len(cols))
        for k, name in enumerate(names):
            values = [finite(metrics[name].get(c)) or 0.0 for c in cols]
            bars = ax.bar(x - 0.4 + width * (k + 0.5), values, width * 0.95, color=colour(name, k),
                          label=model_label(name, summary))
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
            for col, bar, value in zip(cols, bars.patches, values, strict=True):
                tooltip(bar, f"{model_label(name, summary)} · {col}: {value:.4f}")
        ax.set_xticks(x, ["HR@10", "NDCG@10", "catalogue coverage"])
        ax.legend(fontsize=7, frameon=False)
        return render("recommend-ranking", "Federated vs baselines", fig,
                      "Same customers, same held-out items, same 99 sampled negatives for every model.")


def _explore_chart(metrics: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    points = []
    for k, name in enumerate(REC_MODELS):
        m = metrics.get(name)
        ex = m.get("explore") if isinstance(m, dict) else None
        if not ex or finite(ex.get("hr@10")) is None or finite(m.get("ild")) is None:
            continue
        points.append((k, name, (m["ild"], m["hr@10"]), (ex["ild"], ex["hr@10"]), ex.get("share")))
    if not points:
        return None
    with figure("recommend-exploration", 5.0, 3.6) as (fig, (ax,)):
        for k, name, before, after, _share in points:
            ax.annotate("", xy=after, xytext=before,
                        arrowprops={"arrowstyle": "->", "color": colour(name, k), "lw": 1.2})
            dot = ax.scatter(*before, color=colour(name, k), s=18, label=model_label(name, summary))
            diamond = ax.scatter(*after, color=colour(name, k), s=18, marker="D")
            label = model_label(name, summary)
            tooltip(dot, f"{label}, pure ranking: HR@10 {before[1]:.4f}, diversity {before[0]:.3f}")
            tooltip(diamond, f"{model_label(name, summary)}, with exploration: HR@10 {after[1]:.4f}, "
                             f"diversity {after[0]:.3f}")
        share = points[0][4]
        ax.set_xlabel("intra-list diversity of the top-10")
        ax.set_ylabel("HR@10")
        ax.legend(fontsize=7, frameon=False)
        ax.margins(0.15)
        return render("recommend-exploration", "Exploration share trade-off", fig,
                      f"Arrow: from pure ranking (dot) to {share:.0%} of slots reserved for exploration (diamond)."
                      if isinstance(share, float) else "Arrow: from pure ranking to the exploration share.")
