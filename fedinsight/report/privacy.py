"""The privacy section: ε spent per partner against its budget, job by job, read from the ledger.

Why from the ledger and not the summary: the summary knows this job; a compliance officer needs what
each partner has spent in total and what is left, including every earlier job. Per-job bars are the
increase of the partner's composed ε at each charge (composition is sub-additive, so the increments
add up exactly to the composed total, not to the sum of the jobs' standalone ε).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedinsight.core.redact import redact_secrets
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.report.charts import Chart, colour, figure, finite, number, render, tooltip
from fedinsight.report.page import Section, card, esc, key_values, table

OTHER_JOBS = ("#c7c7c7", "#a5a5a5", "#8a8a8a", "#d9d9d9", "#b5b5b5")


@dataclass
class PartnerSpend:
    partner_id: str
    budget: float
    spent: float
    per_job: OrderedDict[str, float] = field(default_factory=OrderedDict)

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget - self.spent)


def ledger_url_for(run_dir: Path, summary: dict[str, Any], explicit: str | None = None) -> str | None:
    """The ledger a run charged: ``--db`` if given, else the one the summary names, else ``RUN/ledger.db``.

    SQLite files that do not exist are skipped rather than created (a report never writes a ledger).
    """
    privacy = summary.get("privacy", {}) if isinstance(summary.get("privacy"), dict) else {}
    candidates = [explicit, privacy.get("ledger_url"), privacy.get("ledger"), f"sqlite:///{run_dir / 'ledger.db'}"]
    for url in candidates:
        if not isinstance(url, str) or not url or url == "default":
            continue
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            continue
        return url
    return None


def read_ledger(url: str) -> list[PartnerSpend]:
    """Every partner's budget, composed spend and per-job increments."""
    ledger = PrivacyLedger(url)
    out = []
    for pid in ledger.partners():
        status = ledger.status(pid)
        spend = PartnerSpend(pid, status.epsilon_budget, status.epsilon_spent)
        before = 0.0
        for charge in ledger.charges(pid):
            spend.per_job[charge.job_id] = spend.per_job.get(charge.job_id, 0.0) + max(0.0, charge.epsilon_after
                                                                                       - before)
            before = max(before, charge.epsilon_after)
        out.append(spend)
    ledger.engine.dispose()
    return out


def job_id_of(summary: dict[str, Any]) -> str | None:
    return summary.get("job_id") or summary.get("batch_id")


def privacy_section(summary: dict[str, Any], spends: list[PartnerSpend] | None, ledger_url: str | None, *,
                    partner_budgets: bool = True) -> tuple[list[str], Section]:
    section = Section("privacy", "Privacy budget")
    job = job_id_of(summary)
    privacy = summary.get("privacy", {}) if isinstance(summary.get("privacy"), dict) else {}
    cards = []
    if spends and not partner_budgets:
        tightest = min(s.remaining for s in spends)
        cards.append(card("federation budget left (tightest partner)", f"ε {tightest:.2f}", "per-partner budgets "
                          "are shown to admins and auditors"))
        section.add('<p class="note">Per-partner budgets are shown to admins and auditors only.</p>')
    elif spends:
        worst = min(spends, key=lambda s: s.remaining)
        cards.append(card("budget left (lowest partner)", f"ε {worst.remaining:.2f} of {worst.budget:.3g}",
                          worst.partner_id, good=worst.remaining > 0.1 * worst.budget))
        section.charts([_budget_chart(spends, job)])
        rows = [[s.partner_id, s.budget, s.spent, s.remaining, s.per_job.get(job or "", 0.0), len(s.per_job)]
                for s in spends]
        section.add(table(["partner", "ε budget", "ε spent (all jobs)", "ε left", "ε this job", "jobs charged"],
                          rows))
        jobs = list(OrderedDict.fromkeys(j for s in spends for j in s.per_job))
        if jobs:
            section.add("<h3>ε by job (increase of each partner's composed ε)</h3>" + table(
                ["job", *(s.partner_id for s in spends)],
                [[f"{j} (this job)" if j == job else j, *(s.per_job.get(j) for s in spends)] for j in jobs]))
        shown_url = esc(redact_secrets(ledger_url or ""))
        section.add(f'<p class="note">From the privacy ledger <code>{shown_url}</code>: each '
                    "partner's charges composed with its accountant; a job that would overspend is refused "
                    "before it runs.</p>")
    else:
        spent = {k: v for k, v in (privacy.get("epsilon_spent") or {}).items() if finite(v) is not None}
        if spent:
            section.charts([_spent_chart(spent, finite(privacy.get("epsilon_target")))])
        section.add('<p class="note">No ledger found next to this run (pass <code>--db URL</code> to '
                    "<code>fedinsight report</code> to read one): the chart shows what the partners' own "
                    "accountants reported for this job.</p>")
    if privacy.get("non_private") or privacy.get("private") is False:
        cards.append(card("privacy", "none", "this run was non-private (a measurement, not a release)", good=False))
    elif finite(privacy.get("epsilon_spent_max")) is not None:
        cards.append(card("ε spent this job (max)", f"{privacy['epsilon_spent_max']:.3g}",
                          f"δ {privacy.get('delta', 0):.2g}"))
    plan = privacy.get("plan") if isinstance(privacy.get("plan"), dict) else {}
    keys = ("mechanism", "accountant", "unit", "noise_multiplier", "sample_rate", "clip", "steps", "noise_model",
            "trust_model", "accountants_agree_with_ledger")
    facts = {**{f"DP-SGD {k}": v for k, v in plan.items()}, **{k: privacy[k] for k in keys if k in privacy}}
    if facts:
        section.add("<h3>Mechanism</h3>" + key_values(facts.items()))
    return cards, section


def _partner_rows(ax: Any, partners: list[str], xlabel: str, *, legend_columns: int) -> None:
    """One horizontal bar row per partner, first at the top, with the legend below the axis (both ε charts)."""
    ax.set_yticks(range(len(partners)), partners)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3 - 0.6 / len(partners)),
              ncol=legend_columns)


def _budget_chart(spends: list[PartnerSpend], job: str | None) -> Chart:
    jobs = list(OrderedDict.fromkeys(j for s in spends for j in s.per_job))
    with figure("privacy-budget", 6.4, 0.9 + 0.38 * len(spends)) as (fig, (ax,)):
        y = np.arange(len(spends))
        left = np.zeros(len(spends))
        others = 0
        for j in jobs:
            widths = np.array([s.per_job.get(j, 0.0) for s in spends])
            if j == job:
                bars = ax.barh(y, widths, left=left, color=colour("federated"), label=f"this job ({j})")
            else:
                bars = ax.barh(y, widths, left=left, color=OTHER_JOBS[others % len(OTHER_JOBS)], edgecolor="white",
                               label="earlier / other jobs" if others == 0 else None)
                others += 1
            for s, bar, width in zip(spends, bars.patches, widths, strict=True):
                if width > 0:  # a partner this job did not charge has no segment to hover
                    tooltip(bar, f"{s.partner_id} · job {j}: ε +{number(width)}")
            left += widths
        budgets = np.array([s.budget for s in spends])
        bars = ax.barh(y, np.clip(budgets - left, 0, None), left=left, color="none", edgecolor="#999999", ls=":",
                       label="left")
        for s, bar, used in zip(spends, bars.patches, left, strict=True):
            tooltip(bar, f"{s.partner_id}: ε {number(used)} spent of {number(s.budget)}, "
                         f"{number(max(s.budget - used, 0.0))} left", area=True)
        ax.scatter(budgets, y, marker="|", s=300, color=colour("budget"), label="budget", zorder=3)
        _partner_rows(ax, [s.partner_id for s in spends], "ε (composed over the partner's jobs)", legend_columns=4)
        return render("privacy-budget", "ε spent per partner against its budget", fig,
                      "Each bar segment is one job's increase of the partner's composed ε; red mark: budget.")


def _spent_chart(spent: dict[str, float], target: float | None) -> Chart:
    names = sorted(spent)
    with figure("privacy-budget", 6.4, 0.9 + 0.38 * len(names)) as (fig, (ax,)):
        bars = ax.barh(range(len(names)), [spent[n] for n in names], color=colour("federated"),
                       label="ε spent this job")
        for name, bar in zip(names, bars.patches, strict=True):
            tooltip(bar, f"{name}: ε {number(spent[name])} this job")
        if target is not None:
            ax.axvline(target, color=colour("budget"), ls="--", label=f"job ε {target:g}")
        _partner_rows(ax, names, "ε", legend_columns=2)
        return render("privacy-budget", "ε spent per partner (this job)", fig,
                      "As reported by each partner's own accountant.")
