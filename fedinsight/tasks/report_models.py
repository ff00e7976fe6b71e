"""Report sections of the model jobs: did the federated model reach the centralized one?

Propensity: learning curve per round against the centralized and BG/NBD lines, ROC, calibration,
cumulative gain with lift, and the LTV tier table. Recommendation: HR@10 / NDCG@10 / coverage against
the baselines, the exploration share's accuracy cost and diversity gain, and the learning curve (or
the privacy spent per round when per-round evaluation was switched off).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedinsight.report.charts import Chart, colour, figure, finite, integer_ticks, number, render, tooltip
from fedinsight.report.page import Section, card, fmt, table

MODEL_LABELS = {"federated": "federated (DP)", "centralized": "centralized, no DP", "bgnbd": "BG/NBD",
                "popularity": "popularity", "local_only": "each partner alone",
                "federated_global": "shared model alone"}


def _label(name: str, summary: dict[str, Any]) -> str:
    if name == "federated" and summary.get("privacy", {}).get("non_private"):
        return "federated (no DP)"
    if name == "federated" and summary.get("privacy", {}).get("private") is False:
        return "federated (no DP)"
    return MODEL_LABELS.get(name, name)


# --- propensity --------------------------------------------------------------------------------------

def propensity_sections(summary: dict[str, Any]) -> tuple[list[str], list[Section]]:
    """Headline cards and the sections of a propensity run."""
    metrics = summary.get("metrics", {})
    fed, cen = metrics.get("federated", {}), metrics.get("centralized", {})
    cards = []
    auc_f, auc_c = finite(fed.get("auc")), finite(cen.get("auc"))
    if auc_f is not None:
        ratio = auc_f / auc_c if auc_c else None
        cards.append(card("federated AUC", f"{auc_f:.4f}",
                          f"{ratio:.1%} of centralized ({auc_c:.4f})" if ratio else "no centralized baseline",
                          good=None if ratio is None else ratio >= 0.97))
    auc_b = finite(metrics.get("bgnbd", {}).get("auc"))
    if auc_f is not None and auc_b is not None:
        cards.append(card("vs BG/NBD", f"{auc_f - auc_b:+.4f} AUC", f"BG/NBD {auc_b:.4f}", good=auc_f >= auc_b))
    lift = finite(fed.get("lift_top_decile"))
    if lift is not None:
        cards.append(card("top-decile lift", f"{lift:.2f}×", "buyers in the top 10 % vs average"))

    learning = Section("learning", "Learning curve")
    learning.charts([c for c in (_propensity_curve(summary),) if c])
    if not learning.parts:
        learning.add('<p class="note">No per-round evaluation in this run.</p>')

    quality = Section("model", "Propensity model")
    curves = summary.get("curves", {})
    quality.charts([c for c in (_roc(curves, summary), _calibration(curves, summary), _gain(curves, summary)) if c])
    quality.add(_metrics_table(metrics, ("auc", "log_loss", "ece", "lift_top_decile", "mae", "tier_accuracy"),
                               summary))
    quality.add(_tier_table(summary))
    if not curves:
        quality.add('<p class="note">This summary has no curve data (written by an older fedinsight); '
                    "re-run the job to get ROC, calibration and gain charts.</p>")
    return cards, [learning, quality]


def _propensity_curve(summary: dict[str, Any]) -> Chart | None:
    rounds = [r for r in summary.get("metrics", {}).get("per_round", []) if finite(r.get("auc")) is not None]
    if not rounds:
        return None
    return _learning_chart(
        summary, rounds, "auc", (("centralized", "--"), ("bgnbd", ":")), name="propensity-learning",
        title="AUC per round", ylabel="held-out AUC", digits=4,
        caption="Federated model evaluated on every partner's held-out customers after each round; "
                "lines: baselines trained in the same run on the same split.")


def _point_tips(ax: Any, rounds: list[dict[str, Any]], key: str, what: str, digits: int) -> None:
    """One invisible hover target per round on a learning curve, saying the round and its value."""
    for r in rounds:
        value = finite(r.get(key))
        if value is None:
            continue
        target = ax.scatter([r["round"]], [value], s=60, alpha=0, zorder=3)  # visible marker: the line's
        tooltip(target, f"round {r['round']}: {what} {value:.{digits}f}", area=True)


def _learning_chart(summary: dict[str, Any], rounds: list[dict[str, Any]], key: str,
                    baselines: tuple[tuple[str, str], ...], *, name: str, title: str, ylabel: str, digits: int,
                    caption: str) -> Chart:
    """The federated metric per round, with each baseline of the same run as a horizontal line."""
    metrics = summary.get("metrics", {})
    with figure(name) as (fig, (ax,)):
        ax.plot([r["round"] for r in rounds], [r[key] for r in rounds], marker="o", ms=3,
                color=colour("federated"), label=_label("federated", summary))
        _point_tips(ax, rounds, key, f"{_label('federated', summary)} {ylabel}", digits)
        for base, style in baselines:
            value = finite(metrics.get(base, {}).get(key))
            if value is not None:
                ax.axhline(value, ls=style, color=colour(base), label=f"{_label(base, summary)} {value:.{digits}f}")
        ax.set_xlabel("round")
        integer_ticks(ax)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, frameon=False)
        return render(name, title, fig, caption)


def _curve_models(curves: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, c[key]) for name, c in curves.items() if isinstance(c, dict) and key in c]


def _roc(curves: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    models = _curve_models(curves, "roc")
    if not models:
        return None
    with figure("propensity-roc", 4.2, 3.6) as (fig, (ax,)):
        for i, (name, roc) in enumerate(models):
            (line,) = ax.plot(roc["fpr"], roc["tpr"], color=colour(name, i), label=_label(name, summary))
            auc = finite(summary.get("metrics", {}).get(name, {}).get("auc"))
            tooltip(line, _label(name, summary) + (f": AUC {auc:.4f}" if auc is not None else ""))
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--", label="random")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_aspect("equal")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        return render("propensity-roc", "ROC curve (repurchase)", fig,
                      "Federated curve read off the partners' summed score histograms (no customer score left a "
                      "partner).")


def _calibration(curves: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    models = _curve_models(curves, "calibration")
    if not models:
        return None
    with figure("propensity-calibration", 4.2, 3.6) as (fig, (ax,)):
        for i, (name, cal) in enumerate(models):
            sizes = 8 + 60 * np.sqrt(np.asarray(cal["n"]) / max(1.0, max(cal["n"], default=1.0)))
            ax.plot(cal["predicted"], cal["observed"], color=colour(name, i), lw=1, label=_label(name, summary))
            for pred, obs, size, n in zip(cal["predicted"], cal["observed"], sizes, cal["n"], strict=True):
                point = ax.scatter([pred], [obs], s=size, color=colour(name, i), alpha=0.7, zorder=3)
                tooltip(point, f"{_label(name, summary)}: predicted {pred:.3f}, observed {obs:.3f} "
                               f"({number(float(n))} customers)")
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--", label="perfect")
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed repurchase rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, frameon=False, loc="upper left")
        return render("propensity-calibration", "Calibration", fig,
                      "Ten equal-width probability bins; marker area grows with the customers in the bin.")


def _gain(curves: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    models = _curve_models(curves, "gain")
    if not models:
        return None
    with figure("propensity-gain", 6.4, 3.4, ncols=2) as (fig, (ax, ax2)):
        for i, (name, gain) in enumerate(models):
            x, y = np.asarray(gain["targeted"]), np.asarray(gain["captured"])
            (line,) = ax.plot(x, y, color=colour(name, i), label=_label(name, summary))
            at = int(np.searchsorted(x, 0.1))
            if at < len(x):
                tooltip(line, f"{_label(name, summary)}: the top {x[at]:.0%} reach {y[at]:.0%} of repurchasers")
            keep = x >= 0.02  # lift at a handful of customers is noise
            ax2.plot(x[keep], y[keep] / x[keep], color=colour(name, i))
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--", label="random")
        ax.set_xlabel("share of customers targeted (best scores first)")
        ax.set_ylabel("share of repurchasers reached")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        ax2.axhline(1, color="#bbbbbb", lw=0.8, ls="--")
        ax2.set_xlabel("share of customers targeted")
        ax2.set_ylabel("lift")
        fig.tight_layout()
        return render("propensity-gain", "Cumulative gain and lift", fig,
                      "Target the top x % by predicted propensity: the share of next-period buyers you reach "
                      "(left) and how many times the average rate that is (right).")


def _metrics_table(metrics: dict[str, Any], columns: tuple[str, ...], summary: dict[str, Any]) -> str:
    rows = []
    for name, values in metrics.items():
        if not isinstance(values, dict) or name in ("ratios",):
            continue
        if not any(c in values for c in columns):
            continue
        rows.append([_label(name, summary), *(finite(values.get(c)) for c in columns)])
    return "<h3>Metrics on the held-out customers</h3>" + table(["model", *columns], rows) if rows else ""


def _tier_table(summary: dict[str, Any]) -> str:
    tiers = summary.get("ltv_tiers", {})
    curves = summary.get("curves", {})
    parts = []
    if tiers:
        levels = tiers.get("levels") or []
        true_t, pred_t = tiers.get("true_thresholds") or [], tiers.get("predicted_thresholds") or []
        rows = []
        for i, name in enumerate(("mid", "high")):
            rows.append([f"{name} tier starts at", f"{levels[i]:.0%} quantile" if i < len(levels) else None,
                         true_t[i] if i < len(true_t) else None, pred_t[i] if i < len(pred_t) else None])
        parts.append("<h3>LTV tiers</h3>" + table(["threshold", "level", "actual spend", "predicted LTV"], rows))
    for name in ("federated", "centralized"):
        conf = curves.get(name, {}).get("tiers")
        if not conf:
            continue
        labels, matrix = conf["labels"], np.asarray(conf["confusion"], dtype=float)
        total = matrix.sum() or 1.0
        rows = [[f"actual {labels[i]}", *(f"{matrix[i, j]:,.0f} ({matrix[i, j] / total:.0%})"
                                          for j in range(len(labels)))] for i in range(len(labels))]
        accuracy = float(np.trace(matrix) / total)
        parts.append(f"<h3>Tier confusion, {_label(name, summary)} (accuracy {accuracy:.1%})</h3>"
                     + table(["", *(f"predicted {x}" for x in labels)], rows))
    return "".join(parts)


# --- recommendation ----------------------------------------------------------------------------------

REC_MODELS = ("federated", "federated_global", "centralized", "local_only", "popularity")


def recommend_sections(summary: dict[str, Any]) -> tuple[list[str], list[Section]]:
    metrics = summary.get("metrics", {})
    fed, cen, pop = (metrics.get(k, {}) for k in ("federated", "centralized", "popularity"))
    cards = []
    hr_f, hr_c, hr_p = (finite(m.get("hr@10")) for m in (fed, cen, pop))
    if hr_f is not None:
        ratio = hr_f / hr_c if hr_c else None
        cards.append(card("federated HR@10", f"{hr_f:.3f}",
                          f"{ratio:.1%} of centralized ({hr_c:.3f})" if ratio else "", good=None if ratio is None
                          else ratio >= 0.9))
    if hr_f is not None and hr_p is not None:
        cards.append(card("vs popularity", f"{hr_f - hr_p:+.3f} HR@10", f"popularity {hr_p:.3f}", good=hr_f > hr_p))
    explore = fed.get("explore", {})
    if finite(explore.get("share")) is not None:
        cards.append(card("exploration share", f"{explore['share']:.0%} of slots",
                          f"HR cost {fmt(finite(explore.get('hr_cost')), 3)}, diversity gain "
                          f"{fmt(finite(explore.get('ild_gain')), 3)}"))

    learning = Section("learning", "Learning curve")
    chart = _recommend_curve(summary)
    if chart:
        learning.charts([chart])
    else:
        learning.add('<p class="note">No per-round evaluation in this run (use --eval-every N to record one).</p>')

    quality = Section("model", "Recommendations")
    quality.charts([c for c in (_ranking_bars(metrics, summary), _explore_chart(metrics, summary)) if c])
    cols = ("hr@10", "ndcg@10", "coverage", "ild")
    rows = [[_label(n, summary), *(finite(metrics[n].get(c)) for c in cols)] for n in REC_MODELS
            if isinstance(metrics.get(n), dict)]
    quality.add("<h3>Ranking metrics (latest interaction vs 99 unseen items)</h3>"
                + table(["model", "HR@10", "NDCG@10", "coverage", "intra-list diversity"], rows))
    rows = []
    for n in REC_MODELS:
        ex = metrics.get(n, {}).get("explore") if isinstance(metrics.get(n), dict) else None
        if ex:
            rows.append([_label(n, summary), finite(metrics[n].get("hr@10")), finite(ex.get("hr@10")),
                         finite(ex.get("hr_cost")), finite(ex.get("ild_gain")), finite(ex.get("coverage_gain"))])
    if rows:
        quality.add("<h3>Exploration share: what it costs and what it buys</h3>"
                    + table(["model", "HR@10 without", "HR@10 with", "HR cost", "diversity gain", "coverage gain"],
                            rows))
    return cards, [learning, quality]


def _recommend_curve(summary: dict[str, Any]) -> Chart | None:
    per_round = summary.get("metrics", {}).get("per_round", [])
    evaluated = [r for r in per_round if finite(r.get("hr@10")) is not None]
    if evaluated:
        return _learning_chart(
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
        _point_tips(ax, spent, "epsilon", "cumulative ε", 3)
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
                          label=_label(name, summary))
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
            for col, bar, value in zip(cols, bars.patches, values, strict=True):
                tooltip(bar, f"{_label(name, summary)} · {col}: {value:.4f}")
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
            dot = ax.scatter(*before, color=colour(name, k), s=18, label=_label(name, summary))
            diamond = ax.scatter(*after, color=colour(name, k), s=18, marker="D")
            tooltip(dot, f"{_label(name, summary)}, pure ranking: HR@10 {before[1]:.4f}, diversity {before[0]:.3f}")
            tooltip(diamond, f"{_label(name, summary)}, with exploration: HR@10 {after[1]:.4f}, "
                             f"diversity {after[0]:.3f}")
        share = points[0][4]
        ax.set_xlabel("intra-list diversity of the top-10")
        ax.set_ylabel("HR@10")
        ax.legend(fontsize=7, frameon=False)
        ax.margins(0.15)
        return render("recommend-exploration", "Exploration share trade-off", fig,
                      f"Arrow: from pure ranking (dot) to {share:.0%} of slots reserved for exploration (diamond)."
                      if isinstance(share, float) else "Arrow: from pure ranking to the exploration share.")
