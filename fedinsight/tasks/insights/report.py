"""Report sections of an insights batch: every released number with its 95 % interval.

Each insight kind gets the chart a marketer would draw (segment sizes and spend, funnel by channel,
A/B lift as a forest plot, an hour × weekday heatmap per segment, channel response); every insight
also lists what was suppressed so nobody mistakes a hidden group for an empty one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedinsight.report.charts import Chart, bars_with_intervals, figure, heatmap, number, render, tooltip
from fedinsight.report.page import Section, esc, table

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = tuple(f"{h:02d}" for h in range(24))


def _est(node: Any) -> dict | None:
    """A released estimate, or None when suppressed / absent."""
    if isinstance(node, dict) and "value" in node and "ci95" in node and not node.get("suppressed"):
        return node
    return None


def _group_label(group: dict[str, Any], by: str | None) -> str:
    if by and by in group:
        return str(group[by])
    if isinstance(group.get("keys"), dict):
        return " / ".join(str(v) for v in group["keys"].values())
    return "?"


def _suppressed_paths(node: Any, path: str = "") -> list[str]:
    """Every suppressed leaf, as a readable path (``email › click``)."""
    if isinstance(node, dict):
        if node.get("suppressed") is True:
            return [path or "(all)"]
        out: list[str] = []
        for key, value in node.items():
            if key in ("suppressed",):
                continue
            out += _suppressed_paths(value, f"{path} › {key}" if path else str(key))
        return out
    if isinstance(node, list):
        out = []
        for item in node:
            label = item.get("campaign") if isinstance(item, dict) else None
            label = label or (_first_str(item) if isinstance(item, dict) else None)
            out += _suppressed_paths(item, f"{path} › {label}" if path and label else (label or path))
        return out
    return []


def _first_str(item: dict[str, Any]) -> str | None:
    for key, value in item.items():
        if isinstance(value, str) and key not in ("decision", "golden_hour", "best_weekday", "best_channel"):
            return value
        if key == "keys" and isinstance(value, dict):
            return " / ".join(str(v) for v in value.values())
    return None


def _suppression_note(insight: dict[str, Any]) -> str:
    paths = _suppressed_paths(insight.get("result", {}))
    rule = (f"noisy customer count below {insight.get('min_group_size', '?')}"
            + (f" + {insight['suppression_margin_sd']:g} noise sd" if insight.get("suppression_margin_sd") else ""))
    if not paths:
        return f'<p class="note">Nothing suppressed ({esc(rule)} would be).</p>'
    shown = ", ".join(esc(p) for p in paths[:40]) + (f" … and {len(paths) - 40} more" if len(paths) > 40 else "")
    return (f'<details class="suppressed"><summary>{len(paths)} cell(s) suppressed ({esc(rule)})</summary>'
            f'<p class="note">{shown}</p></details>')


MONEY_WORDS = ("amount", "spend", "revenue", "value", "price")
"""An aggregate whose name holds one of these is an amount of money (labelled with the reporting currency)."""


def _money(ins: dict[str, Any], label: str) -> str:
    """``label`` with the run's reporting currency (``ins["currency"]``, set by :func:`insights_sections`)."""
    return f"{label} ({ins['currency']})" if ins.get("currency") else label


# --- one chart builder per insight kind ----------------------------------------------------------------

def _segment_profile(ins: dict[str, Any]) -> list[Chart]:
    by = ins.get("query", {}).get("by")
    groups = ins["result"].get("groups", [])
    labels = [_group_label(g, by) for g in groups]
    name = ins["name"]
    with figure(name, 6.4, 3.2, ncols=2) as (fig, (ax, ax2)):
        bars_with_intervals(ax, labels, {"customers": [_est(g.get("customers")) for g in groups]},
                            ylabel="customers")
        spend = _money(ins, "mean spend")
        bars_with_intervals(ax2, labels, {spend: [_est(g.get("mean_spend")) for g in groups]}, ylabel=spend)
        ax.set_title("segment size")
        ax2.set_title(spend)
        fig.tight_layout()
        return [render(name, "", fig, "Bars: DP estimates; whiskers: 95 % intervals.")]


def _ltv_tiers(ins: dict[str, Any]) -> list[Chart]:
    tiers = ins["result"].get("tiers", [])
    labels = [str(t.get("ltv_tier")) for t in tiers]
    with figure(ins["name"]) as (fig, (ax,)):
        bars_with_intervals(ax, labels, {"share of customers": [_est(t.get("customer_share")) for t in tiers],
                                         "share of value": [_est(t.get("value_share")) for t in tiers]},
                            percent=True)
        return [render(ins["name"], "", fig,
                       "Who holds the value: each tier's share of customers against its share of spend.")]


FUNNEL_STAGES = ("exposure", "click", "participate", "convert")


def _funnel(ins: dict[str, Any]) -> list[Chart]:
    by = ins.get("query", {}).get("by")
    groups = ins["result"].get("groups", [])
    labels = [_group_label(g, by) for g in groups]
    series = {stage: [_est(g.get("customers", {}).get(stage)) for g in groups] for stage in FUNNEL_STAGES}
    with figure(ins["name"], 6.4, 3.4) as (fig, (ax,)):
        bars_with_intervals(ax, labels, series, ylabel="customers reaching the stage")
        return [render(ins["name"], "", fig,
                       "Customers at each funnel stage per group, with 95 % intervals; hatched: suppressed.")]


def _ab_test(ins: dict[str, Any]) -> list[Chart]:
    campaigns = ins["result"].get("campaigns", [])
    if not campaigns:
        return []
    with figure(ins["name"], 6.4, 0.9 + 0.45 * len(campaigns)) as (fig, (ax,)):
        for i, camp in enumerate(campaigns):
            diff = _est(camp.get("difference"))
            label = f"{camp.get('campaign')}: {camp.get('treatment')} vs {camp.get('control')}"
            if diff is None:
                ax.annotate(f"{label}: suppressed (groups too small)", (0.02, i), xycoords=("axes fraction", "data"),
                            va="center", fontsize=8, color="#777777")
                continue
            lo, hi = diff["ci95"]
            significant = lo > 0 or hi < 0
            mark = ax.errorbar(diff["value"], i, xerr=[[diff["value"] - lo], [hi - diff["value"]]], fmt="o",
                               color="#2e7d32" if significant else "#1f77b4", capsize=3)
            tooltip(mark.lines[0], f"{label}: {number(diff['value'], True)} "
                                   f"(95 % interval {number(lo, True)} to {number(hi, True)})")
        ax.axvline(0, color="#999999", lw=0.8)
        if not any(_est(c.get("difference")) for c in campaigns):
            ax.set_xlim(-0.1, 0.1)
        ax.set_yticks(range(len(campaigns)), [f"{c.get('campaign')}" for c in campaigns])
        ax.set_ylim(-0.7, len(campaigns) - 0.3)
        ax.invert_yaxis()
        ax.set_xlabel("conversion rate difference, treatment − control (95 % interval)")
        ax.xaxis.set_major_formatter(__import__("matplotlib").ticker.PercentFormatter(1.0))
        return [render(ins["name"], "", fig,
                       "Green: the interval excludes zero (significant at 5 %, noise and sampling included).")]


def zone_words(result: dict[str, Any], *, short: bool = False) -> str:
    """Which clock the hours are read on, in words: the customers' local time (the partners' zones) or one zone."""
    zone = str(result.get("timezone") or "UTC")
    zones = [str(z) for z in result.get("zones") or []]
    if zone == "local":
        if short:
            return "local time"
        return "each customer's local time" + (f" ({', '.join(zones)})" if zones else "")
    return zone


def _golden_hours(ins: dict[str, Any]) -> list[Chart]:
    by = ins.get("query", {}).get("by")
    clock = zone_words(ins["result"], short=True)
    groups = ins["result"].get("groups", [])
    if not groups:
        return []
    labels = [_group_label(g, by) for g in groups]
    if all(isinstance(g.get("by_slot"), dict) for g in groups):
        return [_slot_heatmaps(ins, groups, labels, clock)]
    # marginals only: segment × hour and segment × weekday
    hours = np.array([[_value(g.get("by_hour", {}).get(h)) for h in HOURS] for g in groups])
    days = np.array([[_value(g.get("by_weekday", {}).get(d)) for d in WEEKDAYS] for g in groups])
    with figure(ins["name"], 7.0, 0.9 + 0.45 * len(groups), ncols=2) as (fig, (ax, ax2)):
        image = heatmap(ax, hours, labels, [f"{h}:00" for h in HOURS], label=f"customers by hour ({clock})")
        heatmap(ax2, days, labels, WEEKDAYS, label="by weekday")
        ax2.set_yticks([])
        fig.colorbar(image, ax=[ax, ax2], shrink=0.8, label="customers")
        return [render(ins["name"], "", fig,
                       "Hatched grey: suppressed. This batch released hour and weekday separately, not jointly.")]


def _value(cell: Any) -> float:
    est = _est(cell.get("customers")) if isinstance(cell, dict) else None
    return float(est["value"]) if est else float("nan")


def _slot_heatmaps(ins: dict[str, Any], groups: list[dict[str, Any]], labels: list[str], clock: str) -> Chart:
    grids = [np.array([[_value(g["by_slot"].get(d, {}).get(h)) for h in HOURS] for d in WEEKDAYS]) for g in groups]
    vmax = max((float(np.nanmax(x)) for x in grids if np.isfinite(x).any()), default=1.0)
    sds = [c["customers"]["noise_sd"] for g in groups for d in g["by_slot"].values() for c in d.values()
           if isinstance(c, dict) and _est(c.get("customers"))]
    n = len(groups)
    with figure(ins["name"], 7.0, 1.9 * n + 0.6, ncols=1) as (fig, _):
        fig.clf()
        axes = fig.subplots(n, 1, squeeze=False, gridspec_kw={"hspace": 0.65})[:, 0]
        image = None
        for ax, grid, label, g in zip(axes, grids, labels, groups, strict=True):
            image = heatmap(ax, grid, WEEKDAYS, [f"{h}:00" for h in HOURS],
                            label=f"{label} — peak {g.get('peak_slot') or 'n/a'}", vmax=vmax, group=label)
        fig.colorbar(image, ax=list(axes), shrink=0.6, label="customers")
        sd = f"; each cell ± {1.96 * float(np.median(sds)):.0f} customers (95 %)" if sds else ""
        return render(ins["name"], "", fig,
                      f"Customers responding per weekday × hour ({clock}), per group; hatched grey: suppressed{sd}.")


def _channel_response(ins: dict[str, Any]) -> list[Chart]:
    by = ins.get("query", {}).get("by")
    groups = ins["result"].get("groups", [])
    if not groups:
        return []
    channels = list(groups[0].get("channels", {}))
    labels = [_group_label(g, by) for g in groups]
    series = {ch: [_est(g.get("channels", {}).get(ch, {}).get("response_rate"))
                   if isinstance(g.get("channels", {}).get(ch), dict) else None for g in groups] for ch in channels}
    with figure(ins["name"], 6.4, 3.4) as (fig, (ax,)):
        bars_with_intervals(ax, labels, series, ylabel="response rate", percent=True)
        return [render(ins["name"], "", fig,
                       "Response rate per channel and segment with 95 % intervals; best channel in the table below.")]


def _channel_creative(ins: dict[str, Any]) -> list[Chart]:
    """Response rate per channel-creative pair (bars) for each group, 95 % whiskers; the best pair in the table."""
    by = ins.get("query", {}).get("by")
    groups = ins["result"].get("groups", [])
    if not groups:
        return []
    pairs = [(ch, cr) for ch, row in groups[0].get("cells", {}).items() for cr in row if cr != "other"
             and ch != "other"]
    labels = [_group_label(g, by) for g in groups]

    def rate(g: dict[str, Any], ch: str, cr: str) -> dict | None:
        cell = g.get("cells", {}).get(ch, {}).get(cr)
        return _est(cell.get("response_rate")) if isinstance(cell, dict) else None

    series = {f"{ch} · {cr}": [rate(g, ch, cr) for g in groups] for ch, cr in pairs}
    with figure(ins["name"], 7.0, 3.6) as (fig, (ax,)):
        bars_with_intervals(ax, labels, series, ylabel="response rate", percent=True)
        return [render(ins["name"], "", fig, "Response rate per channel · creative and segment with 95 % intervals "
                       "(pairs with too few customers are suppressed and left out); best pair in the table below.")]


def _group_by(ins: dict[str, Any]) -> list[Chart]:
    groups = ins["result"].get("groups", [])
    if not groups:
        return []
    aggregates = [k for k in groups[0] if k not in ("keys", "suppressed", "customers")]
    labels = [_group_label(g, None) for g in groups]
    with figure(ins["name"], 6.4, 3.2, ncols=1 + len(aggregates)) as (fig, axes):
        bars_with_intervals(axes[0], labels, {"customers": [_est(g.get("customers")) for g in groups]})
        axes[0].set_title("customers")
        for ax, agg in zip(axes[1:], aggregates, strict=True):
            label = _money(ins, agg) if any(w in agg for w in MONEY_WORDS) else agg
            bars_with_intervals(ax, labels, {label: [_est(g.get(agg)) for g in groups]})
            ax.set_title(label)
        fig.tight_layout()
        return [render(ins["name"], "", fig, "DP estimates with 95 % intervals.")]


BUILDERS: dict[str, Callable[[dict[str, Any]], list[Chart]]] = {
    "segment_profile": _segment_profile, "ltv_tiers": _ltv_tiers, "funnel": _funnel, "ab_test": _ab_test,
    "golden_hours": _golden_hours, "channel_response": _channel_response, "channel_creative": _channel_creative,
    "group_by": _group_by,
}


def _headline_rows(ins: dict[str, Any]) -> list[list[object]]:
    """The one-line answers an insight carries (best channel, golden hour, A/B decision)."""
    result, by = ins.get("result", {}), ins.get("query", {}).get("by")
    rows: list[list[object]] = []
    hour = f"golden hour ({zone_words(result, short=True)})"
    for g in result.get("groups", []):
        for key, label in (("best_channel", "best channel"), ("golden_hour", hour),
                           ("best_weekday", "best weekday"), ("peak_slot", "peak weekday-hour")):
            if key in g:
                rows.append([_group_label(g, by), label, g[key] if g[key] is not None else "not released"])
        best = g.get("best_pair", False)
        if best is not False:
            rows.append([_group_label(g, by), "best channel · creative", _pair_words(best)])
    for c in result.get("campaigns", []):
        rows.append([c.get("campaign"), "decision", c.get("decision")])
    return rows


def _pair_words(best: dict[str, Any] | None) -> str:
    """``email · spring-sale: 12.3 % (10.1–14.5 %), clearly ahead`` in a marketer's words."""
    if not best:
        return "not released (too few customers)"
    rate = best["response_rate"]
    lo, hi = rate["ci95"]
    lead = "clearly ahead of the next pair" if best.get("clear_winner") else "not clearly ahead of " + (
        f"{best['runner_up']['channel']} · {best['runner_up']['creative']}" if best.get("runner_up") else "others")
    return f"{best['channel']} · {best['creative']}: {rate['value']:.1%} respond ({lo:.1%}–{hi:.1%}), {lead}"


KEY_WORDS = {"campaigns": "Campaigns", "arms": "A/B arms", "channels": "Channels", "purchase_channels":
             "Purchase channels", "categories": "Categories", "regions": "Regions", "genders": "Genders",
             "occupations": "Occupations", "stages": "Funnel stages", "creatives": "Creatives"}


def _keys_note(keys: dict[str, Any]) -> str:
    """Where the names grouped by came from, in words: declared by the analyst, or found privately."""
    lines = []
    for vocab, entry in keys.items():
        names = ", ".join(str(k) for k in entry.get("keys") or []) or "none"
        what = KEY_WORDS.get(vocab, vocab)
        if entry.get("source") == "discovered":
            lines.append(f"<li>{esc(what)}: {esc(names)} — found privately across the partners: each was held by "
                         f"at least about {float(entry.get('threshold', 0)):,.0f} customers at one partner (noisy "
                         "count); rarer values stay hidden and count under “other”.</li>")
        else:
            lines.append(f"<li>{esc(what)}: {esc(names)} — as named in the spec"
                         + (" (default)" if entry.get("source") == "default" else "") + ".</li>")
    return f'<p class="note">What the insights group by:</p><ul class="note">{"".join(lines)}</ul>' if lines else ""


def noise_words(document: dict[str, Any]) -> str:
    """Which noise model the batch was released with, in words (escaped)."""
    mechanism = esc(document.get("mechanism", ""))
    if document.get("noise_model") == "distributed-secagg":
        return ("Every number below is a differentially private estimate (discrete-Gaussian noise shares added on "
                "each partner, summed under SecAgg+: the coordinator saw only the noisy sum)")
    return f"Every number below is a differentially private estimate ({mechanism} noise added on each partner)"


def insights_sections(document: dict[str, Any], currency: str | None = None) -> tuple[list[str], list[Section]]:
    """Sections for an ``insights.json`` document (a batch); ``currency``: the run's reporting currency, which
    money figures are labelled with."""
    from fedinsight.report.page import card

    insights = document.get("insights", [])
    suppressed = sum(int(i.get("suppressed_groups", 0)) for i in insights)
    groups = sum(int(i.get("groups", 0)) for i in insights)
    cards = [card("insights released", str(len(insights)), f"batch {document.get('batch_id', '?')}"),
             card("groups suppressed", f"{suppressed} of {groups}",
                  f"noisy count below {document.get('min_group_size', '?')} customers")]
    section = Section("insights", "Insights")
    section.add(f'<p class="note">{noise_words(document)}; whiskers and brackets are 95 % intervals of that '
                "noise and, for rates, of sampling.</p>")
    if document.get("trust_model"):
        section.add(f'<p class="note">Trust model: {esc(document["trust_model"])}.</p>')
    keys = _keys_note(document.get("keys") or {})
    if keys:
        section.add(keys)
    for ins in insights:
        section.add(f"<h3>{esc(ins.get('title', ins.get('name')))}</h3>")
        clock = f" · hours in {esc(zone_words(ins['result']))}" if ins.get("kind") == "golden_hours" \
            and isinstance(ins.get("result"), dict) else ""
        section.add(f'<p class="note">{esc(ins.get("kind"))} · ε {ins.get("epsilon", 0):.3g} · '
                    f'{ins.get("partners", "?")} partners · {esc(ins.get("noise_model", "local"))} noise{clock}</p>')
        builder = BUILDERS.get(str(ins.get("kind")))
        try:
            charts = builder({**ins, "currency": currency}) if builder and isinstance(ins.get("result"), dict) else []
        except (KeyError, TypeError, ValueError) as exc:  # a result shape this report does not know
            charts = []
            section.add(f'<p class="note">No chart for this result ({esc(type(exc).__name__)}: {esc(exc)}).</p>')
        section.charts(charts)
        rows = _headline_rows(ins)
        if rows:
            answers = list(dict.fromkeys(str(r[1]) for r in rows))
            pivot: dict[str, dict[str, object]] = {}
            for group, answer, value in rows:
                pivot.setdefault(str(group), {})[str(answer)] = value
            section.add(table(["", *answers], [[g, *(v.get(a, "–") for a in answers)] for g, v in pivot.items()]))
        section.add(_suppression_note(ins))
    return cards, [section]
