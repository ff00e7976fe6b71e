"""What the model tasks' report sections share: model labels and the learning-curve chart."""

from __future__ import annotations

from typing import Any

from fedinsight.report.charts import Chart, colour, figure, finite, integer_ticks, render, tooltip

MODEL_LABELS = {"federated": "federated (DP)", "centralized": "centralized, no DP", "bgnbd": "BG/NBD",
                "popularity": "popularity", "local_only": "each partner alone",
                "federated_global": "shared model alone", "federated_exact": "federated, exact (simulation only)",
                "previous": "previous model (before recalibration)",
                "previous_exact": "previous model, exact (simulation only)"}


def model_label(name: str, summary: dict[str, Any]) -> str:
    if name == "federated" and summary.get("privacy", {}).get("non_private"):
        return "federated (no DP)"
    if name == "federated" and summary.get("privacy", {}).get("private") is False:
        return "federated (no DP)"
    return MODEL_LABELS.get(name, name)


def point_tips(ax: Any, rounds: list[dict[str, Any]], key: str, what: str, digits: int) -> None:
    """One invisible hover target per round on a learning curve, saying the round and its value."""
    for r in rounds:
        value = finite(r.get(key))
        if value is None:
            continue
        target = ax.scatter([r["round"]], [value], s=60, alpha=0, zorder=3)  # visible marker: the line's
        tooltip(target, f"round {r['round']}: {what} {value:.{digits}f}", area=True)


def learning_chart(summary: dict[str, Any], rounds: list[dict[str, Any]], key: str,
                    baselines: tuple[tuple[str, str], ...], *, name: str, title: str, ylabel: str, digits: int,
                    caption: str) -> Chart:
    """The federated metric per round, with each baseline of the same run as a horizontal line."""
    metrics = summary.get("metrics", {})
    with figure(name) as (fig, (ax,)):
        ax.plot([r["round"] for r in rounds], [r[key] for r in rounds], marker="o", ms=3,
                color=colour("federated"), label=model_label("federated", summary))
        point_tips(ax, rounds, key, f"{model_label('federated', summary)} {ylabel}", digits)
        for base, style in baselines:
            value = finite(metrics.get(base, {}).get(key))
            if value is not None:
                label = f"{model_label(base, summary)} {value:.{digits}f}"
                ax.axhline(value, ls=style, color=colour(base), label=label)
        ax.set_xlabel("round")
        integer_ticks(ax)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, frameon=False)
        return render(name, title, fig, caption)
