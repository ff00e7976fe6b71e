"""The propensity run's report sections: did the federated model reach the centralized one?

Learning curve per round against the centralized and BG/NBD lines, ROC, calibration, cumulative gain with
lift, and the LTV tier table.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from fedinsight.report.charts import Chart, colour, figure, finite, number, render, tooltip
from fedinsight.report.learning import learning_chart, model_label
from fedinsight.report.page import Section, card, money_label, table


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
    evaluation = (summary.get("privacy") or {}).get("evaluation") or {}
    if finite(evaluation.get("epsilon")) is not None:
        sd = finite(fed.get("auc_noise_sd"))
        exact = finite(metrics.get("federated_exact", {}).get("auc"))
        detail = f"{evaluation.get('releases')} Gaussian release(s) per partner, in the job's charge"
        if sd is not None:
            detail += f"; the noise alone moves the AUC by about ±{sd:.3f}"
        if exact is not None:
            detail += f"; exact AUC of the same model {exact:.4f} (simulation only)"
        cards.append(card("evaluation epsilon", f"{evaluation['epsilon']:.3g}", detail))
    elif evaluation and not evaluation.get("evaluate", True):
        cards.append(card("evaluation", "off", "evaluate = false: nothing was sent or charged for it"))
    auc_b = finite(metrics.get("bgnbd", {}).get("auc"))
    if auc_f is not None and auc_b is not None:
        cards.append(card("vs BG/NBD", f"{auc_f - auc_b:+.4f} AUC", f"BG/NBD {auc_b:.4f}", good=auc_f >= auc_b))
    lift = finite(fed.get("lift_top_decile"))
    if lift is not None:
        cards.append(card("top-decile lift", f"{lift:.2f}×", "buyers in the top 10 % vs average"))

    privacy = summary.get("privacy") or {}
    if privacy.get("noise_model") == "distributed-secagg":
        secagg = privacy.get("secagg") or {}
        cards.append(card("noise", "shared (SecAgg+)",
                          f"statistics, training, LTV tiers and evaluation: each of {secagg.get('partners', '?')} "
                          "partners added a share; the coordinator saw only totals"))

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
    quality.add(_noise_note(privacy))
    if not curves:
        quality.add('<p class="note">This summary has no curve data (written by an older fedinsight); '
                    "re-run the job to get ROC, calibration and gain charts.</p>")
    sections = [learning, quality]
    drift = _drift_section(summary.get("recalibration"))
    if drift is not None:
        sections.append(drift)
        cards.append(_drift_card(summary["recalibration"]))
    return cards, sections


def _drift_card(recal: dict[str, Any]) -> str:
    """Repurchase forecast miss of the previous and the recalibrated model (expected minus observed rate)."""
    large = (recal.get("drift") or {}).get("calibration_in_the_large") or {}
    lifetime = finite(recal.get("lifetime_epsilon_max"))
    detail = f"lifetime epsilon {lifetime:.3g} (ledger)" if lifetime is not None else "see the history table"
    old, new = finite(large.get("previous_gap")), finite(large.get("new_gap"))
    if old is None or new is None:
        return card("calibration drift", "-", detail)
    return card("calibration drift", f"{old:+.0%} → {new:+.0%}",
                f"repurchase forecast minus actual, previous → recalibrated model; {detail}",
                good=abs(new) <= abs(old))


def _drift_section(recal: dict[str, Any] | None) -> Section | None:
    """Quarterly recalibration: old vs new on the newest held-out customers, and the model's history."""
    if not recal:
        return None
    section = Section("recalibration", "Recalibration: what changed since the last model")
    drift = recal.get("drift") or {}
    section.add(f"<p>{escape(str(drift.get('words', '')))}</p>")
    rows = []
    for e in recal.get("history") or []:
        window = e.get("window") or {}
        metrics = e.get("metrics") or {}
        lifetime = e.get("lifetime_epsilon") or {}
        rows.append([f"{window.get('start')} to {window.get('cutoff')} (labels to {window.get('end')})",
                     "from scratch" if not e.get("warm_started_from") else "warm start",
                     finite(e.get("epsilon_charged")), finite(metrics.get("ece")), finite(metrics.get("tier_accuracy")),
                     max(lifetime.values()) if lifetime else None])
    section.add("<h3>Model history</h3>" + table(
        ["window (features from .. to)", "trained", "epsilon this model", "calibration error", "tier accuracy",
         "lifetime epsilon (ledger, largest partner)"], rows))
    section.add(f'<p class="note">Each model spends its own epsilon from every partner\'s ledger; the lifetime '
                f"figure is what the ledger has composed over all of them at one delta, the figure each partner's "
                f"budget is checked against (the models' own figures add up to "
                f"{finite(recal.get('quarters_epsilon_sum')) or 0:.3g}; composing them at one delta can give a "
                "little more). Old and new model were compared on the same newest held-out customers through DP "
                "evaluation releases, charged in this job.</p>")
    return section


def _noise_note(privacy: dict[str, Any]) -> str:
    """Who added the training noise and whom that trusts, in words (the trust model summary.json states)."""
    trust = privacy.get("trust_model")
    if not trust or privacy.get("non_private"):
        return ""
    if privacy.get("noise_model") == "distributed-secagg":
        secagg = privacy.get("secagg") or {}
        how = ("Training noise was shared: in every round each partner sent its customers' clipped model update plus "
               "only its part of the privacy noise, locked by secure aggregation, so the coordinator saw only the "
               f"total of all partners (at least {secagg.get('contributors_min', '?')} in each of "
               f"{secagg.get('rounds_unmasked', '?')} rounds). Together the parts carry the full noise the privacy "
               "budget pays for, which is why the model is closer to the centralized one than with local noise.")
    else:
        how = "Training noise was local: every partner added the full privacy noise to its own model update."
    per = escape(_release_noise_words(privacy))
    return f'<p class="note">{escape(how)} {per} Trust model: {escape(str(trust))}.</p>'


def _release_noise_words(privacy: dict[str, Any]) -> str:
    """Which noise each release used, in a marketer's words (summary.json's ``release_noise``)."""
    per = privacy.get("release_noise") or {}
    if not per:
        return ""
    words = {"distributed-secagg": "shared noise, only the partners' total seen",
             "local": "each partner's own full noise"}
    return "Noise per result: " + "; ".join(f"{name}: {words.get(str(model), str(model))}"
                                            for name, model in per.items()) + "."


def _propensity_curve(summary: dict[str, Any]) -> Chart | None:
    rounds = [r for r in summary.get("metrics", {}).get("per_round", []) if finite(r.get("auc")) is not None]
    if not rounds:
        return None
    return learning_chart(
        summary, rounds, "auc", (("centralized", "--"), ("bgnbd", ":")), name="propensity-learning",
        title="AUC per round", ylabel="held-out AUC", digits=4,
        caption="Federated model evaluated on every partner's held-out customers after each round; "
                "lines: baselines trained in the same run on the same split.")


def _curve_models(curves: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, c[key]) for name, c in curves.items() if isinstance(c, dict) and key in c]


def _roc(curves: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    models = _curve_models(curves, "roc")
    if not models:
        return None
    with figure("propensity-roc", 4.2, 3.6) as (fig, (ax,)):
        for i, (name, roc) in enumerate(models):
            (line,) = ax.plot(roc["fpr"], roc["tpr"], color=colour(name, i), label=model_label(name, summary))
            auc = finite(summary.get("metrics", {}).get(name, {}).get("auc"))
            tooltip(line, model_label(name, summary) + (f": AUC {auc:.4f}" if auc is not None else ""))
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--", label="random")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_aspect("equal")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        return render("propensity-roc", "ROC curve (repurchase)", fig,
                      "Federated curve read off the partners' summed *noisy* score histograms (DP releases, "
                      "16 logit bins; no customer score left a partner): its steps are the bins, its wiggles noise.")


def _calibration(curves: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    models = _curve_models(curves, "calibration")
    if not models:
        return None
    with figure("propensity-calibration", 4.2, 3.6) as (fig, (ax,)):
        for i, (name, cal) in enumerate(models):
            sizes = 8 + 60 * np.sqrt(np.asarray(cal["n"]) / max(1.0, max(cal["n"], default=1.0)))
            label = model_label(name, summary)
            ax.plot(cal["predicted"], cal["observed"], color=colour(name, i), lw=1, label=label)
            for pred, obs, size, n in zip(cal["predicted"], cal["observed"], sizes, cal["n"], strict=True):
                point = ax.scatter([pred], [obs], s=size, color=colour(name, i), alpha=0.7, zorder=3)
                tooltip(point, f"{model_label(name, summary)}: predicted {pred:.3f}, observed {obs:.3f} "
                               f"({number(float(n))} customers)")
        ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--", label="perfect")
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed repurchase rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, frameon=False, loc="upper left")
        return render("propensity-calibration", "Calibration", fig,
                      "Ten equal-width probability bins (federated: read off the noisy logit histograms at each "
                      "bin's centre); marker area grows with the customers in the bin.")


def _gain(curves: dict[str, Any], summary: dict[str, Any]) -> Chart | None:
    models = _curve_models(curves, "gain")
    if not models:
        return None
    with figure("propensity-gain", 6.4, 3.4, ncols=2) as (fig, (ax, ax2)):
        for i, (name, gain) in enumerate(models):
            x, y = np.asarray(gain["targeted"]), np.asarray(gain["captured"])
            (line,) = ax.plot(x, y, color=colour(name, i), label=model_label(name, summary))
            at = int(np.searchsorted(x, 0.1))
            if at < len(x):
                tooltip(line, f"{model_label(name, summary)}: the top {x[at]:.0%} reach {y[at]:.0%} of repurchasers")
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
        rows.append([model_label(name, summary), *(finite(values.get(c)) for c in columns)])
    headers = [money_label(summary, c) if c == "mae" else c for c in columns]  # mae: of spend, a money figure
    return "<h3>Metrics on the held-out customers</h3>" + table(["model", *headers], rows) if rows else ""


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
        parts.append("<h3>LTV tiers</h3>" + table(["threshold", "level", money_label(summary, "actual spend"),
                                                    money_label(summary, "predicted LTV")], rows))
    for name in ("federated", "centralized"):
        conf = curves.get(name, {}).get("tiers")
        if not conf:
            continue
        labels, matrix = conf["labels"], np.asarray(conf["confusion"], dtype=float)
        total = matrix.sum() or 1.0
        rows = [[f"actual {labels[i]}", *(f"{matrix[i, j]:,.0f} ({matrix[i, j] / total:.0%})"
                                          for j in range(len(labels)))] for i in range(len(labels))]
        accuracy = float(np.trace(matrix) / total)
        parts.append(f"<h3>Tier confusion, {model_label(name, summary)} (accuracy {accuracy:.1%})</h3>"
                     + table(["", *(f"predicted {x}" for x in labels)], rows))
    return "".join(parts)
