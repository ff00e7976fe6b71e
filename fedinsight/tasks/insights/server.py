"""The coordinator's side of DP insights: plan and price a batch, combine the noisy answers, release.

The task contract (:func:`fedinsight.federation.task.start`) runs the order that is the guarantee: hello
(each partner's id and table schema, no customer data), :func:`plan` (queries no partner has data for are
skipped with the reason; the batch's (epsilon, delta) is split over the queries), the ledger charge of the
composed batch for every partner -- or a refusal before anyone computes --, then :func:`run`: ``compute``
on every partner, combination, suppression of small groups on noisy counts, error bars
(:mod:`.results`), the insight store and ``insights.json``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fedinsight.core.errors import (
    BudgetExceededError,
    ConfigError,
    PartnerReplyError,
)
from fedinsight.core.files import atomic_output_file
from fedinsight.core.redact import safe_url
from fedinsight.data.schema import TABLES, PartnerData
from fedinsight.federation.manifest import PUBLIC, Release
from fedinsight.privacy.allocation import QueryNoise, batch_event, split_budget
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.insights.aggregates import CREATIVE, LocalAggregate, compute
from fedinsight.tasks.insights.catalogue import InsightBatch
from fedinsight.tasks.insights.client import RESULTS
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.results import build_insight, combine

TABLES_JSON = r"[][{}\":,A-Za-z0-9_. -]{0,20000}"
TIMEZONE = r"[A-Za-z0-9_+/-]{1,64}"
MIN_PARTNERS = 2
"""Fewer partners and an answer would be one partner's own (noisy) figure."""


# --- planning and pricing (no Flower here: the simulation prices with the same functions) ----------

def plan_batch(batch: InsightBatch, tables: dict[str, dict[str, list[str]]]) -> tuple[InsightBatch, list[dict]]:
    """Drop queries that no partner holds data for (spending budget on all-zero answers helps nobody)."""
    held = {name for partner in tables.values() for name in partner}
    if any(q.kind == "channel_creative" for q in batch.queries):  # type: ignore[attr-defined]
        lacking = sorted(pid for pid, t in tables.items() if CREATIVE not in (t.get("events") or []))
        if lacking:
            raise ConfigError(f"channel x creative needs each partner's campaign events to name the creative: "
                              f"{', '.join(lacking)} ha{'s' if len(lacking) == 1 else 've'} no `{CREATIVE}` column. "
                              f"Map the column holding the ad or message variant to `{CREATIVE}` in the partner's "
                              "mapping.toml (or leave channel-creative out with --only). Nothing was charged.")
    keep, skipped = [], []
    for q in batch.queries:
        table = getattr(q, "table", "events" if q.needs_events else "transactions")
        if table == "customers" or table in held:
            keep.append(q)
        else:
            skipped.append({"name": q.name, "kind": q.kind, "reason": f"no partner holds a {table} table"})
    if not keep:
        raise ConfigError("none of the requested insights can be computed from the partners' tables")
    return batch.model_copy(update={"queries": keep}), skipped


def price_batch(batch: InsightBatch, *, accountant: str = "rdp",
                extra: dict[str, float] | None = None) -> dict[str, QueryNoise]:
    """Noise per query so the batch composes to the batch's (epsilon, delta); ``extra`` are further releases of
    the batch by weight (key discovery), priced in the same split."""
    return split_budget({**{q.name: q.weight for q in batch.queries}, **(extra or {})}, batch.epsilon, batch.delta,
                        batch.mechanism, accountant=accountant)


def check_affordable(ledger: PrivacyLedger, partner_ids: list[str], noises: dict[str, QueryNoise]) -> None:
    """Raise :class:`BudgetExceededError` (with what remains) if any partner cannot afford the batch."""
    event = batch_event(noises)
    refused = []
    for pid in sorted(partner_ids):
        status = ledger.status(pid)
        after = ledger.price(pid, [event])
        if after > status.epsilon_budget + 1e-9:
            refused.append(f"{pid}: would reach epsilon {after:.4g} > budget {status.epsilon_budget:.4g} "
                           f"(spent {status.epsilon_spent:.4g}, remaining {status.epsilon_remaining:.4g})")
    if refused:
        raise BudgetExceededError("insight batch refused before any partner computed: " + "; ".join(refused)
                                  + ". Ask for a smaller --epsilon or fewer insights.")


def release_batch(batch: InsightBatch, noises: dict[str, QueryNoise], replies: list[dict[str, Any]], *,
                  accountant: str = "rdp", contributors: int | None = None,
                  noise_model: str = "local") -> list[dict[str, Any]]:
    """Combine partner replies (one dict per partner: query name -> reply) into released insights.

    ``contributors``: ``replies`` is one reply already summed over that many partners under SecAgg+
    (``noise_model`` distributed-secagg); each insight records its noise model."""
    partners = len(replies) if contributors is None else contributors
    if contributors is not None and len(replies) != 1:
        raise ConfigError("a secure sum is one reply")
    if partners < MIN_PARTNERS:
        raise ConfigError(f"insights need at least {MIN_PARTNERS} partners (got {partners}), "
                          "so that no answer is one partner's own figure")
    out = []
    for q in batch.queries:
        try:
            per_partner = [r[q.name] for r in replies]
        except KeyError:
            raise PartnerReplyError(f"a partner did not answer query '{q.name}'") from None
        combined = replace(combine(q.name, per_partner, noises[q.name]), partners=partners)
        insight = build_insight(q, combined, rules=batch.features, min_group_size=batch.min_group_size,
                                noise=noises[q.name], epsilon=noises[q.name].epsilon(batch.delta, accountant),
                                delta=batch.delta, margin_sd=batch.suppression_margin_sd)
        out.append({**insight, "noise_model": noise_model})
    return out


def summary_of(batch: InsightBatch, insights: list[dict], skipped: list[dict], spent: dict[str, float],
             ledger: PrivacyLedger, noises: dict[str, QueryNoise], seconds: float, ids: list[int]) -> dict:
    statuses = [ledger.status(pid) for pid in sorted(spent)]
    return {
        "batch_id": batch.batch_id,
        "requester": batch.requester,
        "partners": len(spent),
        "insights": [{"name": i["name"], "kind": i["kind"], "epsilon": i["epsilon"],
                      "suppressed_groups": i["suppressed_groups"], "groups": i["groups"]} for i in insights],
        "skipped": skipped,
        "suppressed_groups": sum(i["suppressed_groups"] for i in insights),
        "min_group_size": batch.min_group_size,
        "suppression_margin_sd": batch.suppression_margin_sd,
        "privacy": {
            "epsilon_requested": batch.epsilon,
            "delta": batch.delta,
            "mechanism": batch.mechanism,
            "accountant": ledger.accountant,
            "epsilon_batch": compose_epsilon([n.event for n in noises.values()], batch.delta, ledger.accountant),
            "epsilon_spent_max": max(s.epsilon_spent for s in statuses),
            "epsilon_spent_min": min(s.epsilon_spent for s in statuses),
            "epsilon_budget_min": min(s.epsilon_budget for s in statuses),
            "epsilon_remaining_min": min(s.epsilon_remaining for s in statuses),
            "ledger": safe_url(str(ledger.engine.url)),
        },
        "store_ids": ids,
        "seconds": round(seconds, 3),
    }


def write_insights(out_dir: Path, insights: list[dict], summary: dict, batch: InsightBatch) -> Path:
    """``insights.json``: every released insight, written atomically; its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"batch_id": batch.batch_id, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "requester": batch.requester, "epsilon": batch.epsilon, "delta": batch.delta,
           "mechanism": batch.mechanism, "min_group_size": batch.min_group_size,
           "suppression_margin_sd": batch.suppression_margin_sd, "partners": summary["partners"],
           "noise_model": summary["privacy"].get("noise_model", "local"),
           "trust_model": summary["privacy"].get("trust_model", ""),
           "insights": insights, "skipped": summary["skipped"], "keys": summary.get("keys", {}),
           "timezones": summary.get("timezones", [])}
    path = out_dir / "insights.json"
    with atomic_output_file(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    return path


# --- the task's workflow ------------------------------------------------------------------------------

def layout_of(batch: InsightBatch) -> dict[str, LocalAggregate]:
    """Each query's aggregate over no customers: its layout, length and declared sensitivity (all public)."""
    empty = PartnerData(partner_id="layout")
    for name, spec in TABLES.items():
        setattr(empty, name, pd.DataFrame({c: pd.Series(dtype=object) for c in spec.column_names}))
    features = customer_features(empty, FeatureRules.from_dict(batch.features.model_dump(mode="json")))
    return {q.name: compute(q.kind, features, q.params()) for q in batch.queries}  # type: ignore[attr-defined]


def manifest_of(batch: InsightBatch, noises: dict[str, QueryNoise], layouts: dict[str, LocalAggregate],
                task: str) -> list[Release]:
    releases = [Release(
        "compute", RESULTS, {q.name: (len(layouts[q.name].vector()),)}, noises[q.name].mechanism,
        what=f"{q.title}: contribution-bounded {', '.join(m.name for m in layouts[q.name].measures)}",
        sensitivity=(f"L1 {layouts[q.name].l1:g}" if noises[q.name].mechanism == "laplace"
                     else f"L2 {layouts[q.name].l2:.4g}") + " per customer (declared bounds)",
        event=noises[q.name].event) for q in batch.queries]
    return [manifest_of_facts(), *releases]


def manifest_of_facts() -> Release:
    return Release("hello", "facts", {"tables": None, "timezone": None}, PUBLIC, kind="text",
                   patterns={"tables": TABLES_JSON, "timezone": TIMEZONE},
                   what="which canonical tables and columns the partner holds, and its own time zone",
                   reason="the schema of the partner's tables (names, no values) and the zone its customers' local "
                          "time is read in (the partner's setting, not a customer's)")


def replies_from(values: dict[str, list[float]], batch: InsightBatch, noises: dict[str, QueryNoise],
                 layouts: dict[str, LocalAggregate]) -> dict[str, Any]:
    """A partner's noisy vectors with what the coordinator knows of them (layout, noise) for combination."""
    out = {}
    for q in batch.queries:
        agg, noise = layouts[q.name], noises[q.name]
        sensitivity = agg.l1 if noise.mechanism == "laplace" else agg.l2
        scale = sensitivity * noise.multiplier
        out[q.name] = {"layout": agg.layout(), "values": list(values[q.name]), "mechanism": noise.mechanism,
                       "multiplier": noise.multiplier, "sensitivity": sensitivity,
                       "noise_variance": 2 * scale**2 if noise.mechanism == "laplace" else scale**2}
    return out
