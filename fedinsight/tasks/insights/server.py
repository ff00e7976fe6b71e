"""The coordinator's DP insights job (``run_config["task"] = "insights"``).

Order matters, and is the privacy guarantee:

1. wait for the expected partners, ask each for its id and table schema (``hello``: no customer data);
2. plan the batch (queries no partner has data for are skipped, with the reason) and split its
   (epsilon, delta) over the queries (:mod:`fedinsight.privacy.allocation`);
3. **charge every partner's ledger entry atomically** with the composed event of the batch -- a batch
   that would overspend any partner is refused here, with the remaining budget, before anyone computes;
4. send ``compute``; each partner bounds, aggregates and noises locally;
5. combine, suppress small groups on noisy counts, attach error bars (:mod:`.insight_results`);
6. write ``insights.json`` / ``summary.json`` (if ``out-dir`` is set) and store the insights with the
   ledger, in the same database.

Run config keys: ``batch`` (JSON :class:`~.insight_catalogue.InsightBatch`), ``partners``, ``db-url``
(default: ``$FEDINSIGHT_DB_URL``, which a coordinator sets),
optional ``out-dir``, ``data-root`` (simulation), ``budget-epsilon``/``budget-delta`` (create budgets
for partners that have none; without them, budgets must already exist), ``timeout`` (seconds).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from sqlalchemy.engine import make_url

from fedinsight.core.db import default_db_url
from fedinsight.core.errors import (
    BudgetExceededError,
    ConfigError,
    DataValidationError,
    FedinsightError,
    PartnerReplyError,
)
from fedinsight.core.files import atomic_output_file
from fedinsight.federation.partners import wait_for_partners
from fedinsight.federation.store import InsightStore
from fedinsight.privacy.allocation import QueryNoise, batch_event, split_budget
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.insights.catalogue import InsightBatch, parse_batch
from fedinsight.tasks.insights.results import build_insight, combine

MESSAGE_TYPE = "query.insights"
MIN_PARTNERS = 2
"""Fewer partners and an answer would be one partner's own (noisy) figure."""


# --- planning and pricing (no Flower here: the CLI prices with the same functions) ------------------

def plan_batch(batch: InsightBatch, tables: dict[str, dict[str, list[str]]]) -> tuple[InsightBatch, list[dict]]:
    """Drop queries that no partner holds data for (spending budget on all-zero answers helps nobody)."""
    held = {name for partner in tables.values() for name in partner}
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


def price_batch(batch: InsightBatch, *, accountant: str = "rdp") -> dict[str, QueryNoise]:
    """Noise per query so the batch composes to the batch's (epsilon, delta)."""
    return split_budget({q.name: q.weight for q in batch.queries}, batch.epsilon, batch.delta, batch.mechanism,
                        accountant=accountant)


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
                  accountant: str = "rdp") -> list[dict[str, Any]]:
    """Combine partner replies (one dict per partner: query name -> reply) into released insights."""
    if len(replies) < MIN_PARTNERS:
        raise ConfigError(f"insights need at least {MIN_PARTNERS} partners (got {len(replies)}), "
                          "so that no answer is one partner's own figure")
    out = []
    for q in batch.queries:
        try:
            per_partner = [r[q.name] for r in replies]
        except KeyError:
            raise PartnerReplyError(f"a partner did not answer query '{q.name}'") from None
        combined = combine(q.name, per_partner, noises[q.name])
        out.append(build_insight(q, combined, rules=batch.features, min_group_size=batch.min_group_size,
                                 noise=noises[q.name], epsilon=noises[q.name].epsilon(batch.delta, accountant),
                                 delta=batch.delta, margin_sd=batch.suppression_margin_sd))
    return out


def safe_url(url: str) -> str:
    """A database URL without its password (for logs and summaries)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: show nothing of it
        return "<database>"


# --- Flower orchestration -------------------------------------------------------------------------



PARTNER_ERRORS: dict[str, type[FedinsightError]] = {
    "BudgetExceededError": BudgetExceededError, "ConfigError": ConfigError,
    "DataValidationError": DataValidationError,
}
"""Typed errors a partner reports (``"Type: message"``) that keep their type (and exit code) here."""


def _partner_error(node: int, op: str, reason: str) -> FedinsightError:
    kind, _, message = reason.partition(": ")
    cls = PARTNER_ERRORS.get(kind)
    if cls is None:
        return PartnerReplyError(f"a partner (node {node}) failed on '{op}': {reason}")
    if cls is DataValidationError:
        return DataValidationError(message, file=f"partner node {node}")
    return cls(f"a partner refused '{op}': {message}")


def _ask(grid: Grid, nodes: list[int], config: dict[str, Any], timeout: float) -> dict[int, dict[str, Any]]:
    msgs = [Message(RecordDict({"config": ConfigRecord(config)}), dst_node_id=n, message_type=MESSAGE_TYPE)
            for n in nodes]
    replies: dict[int, dict[str, Any]] = {}
    for reply in grid.send_and_receive(msgs, timeout=timeout):
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise _partner_error(node, str(config["op"]), reply.error.reason)
        replies[node] = dict(reply.content["reply"])
    missing = sorted(set(nodes) - set(replies))
    if missing:
        raise PartnerReplyError(f"{len(missing)} partner(s) did not answer '{config['op']}' within {timeout:.0f}s")
    return replies


def _summary(batch: InsightBatch, insights: list[dict], skipped: list[dict], spent: dict[str, float],
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


def write_outputs(out_dir: Path, insights: list[dict], summary: dict, batch: InsightBatch) -> None:
    """``insights.json`` (every released insight) and ``summary.json``, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"batch_id": batch.batch_id, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "requester": batch.requester, "epsilon": batch.epsilon, "delta": batch.delta,
           "mechanism": batch.mechanism, "min_group_size": batch.min_group_size,
           "suppression_margin_sd": batch.suppression_margin_sd, "partners": summary["partners"],
           "insights": insights, "skipped": summary["skipped"]}
    for name, payload in (("insights.json", doc), ("summary.json", summary)):
        with atomic_output_file(out_dir / name) as tmp:
            tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def run(grid: Grid, context: Context) -> None:
    """The ServerApp task: see the module docstring for the order of steps."""
    started = time.perf_counter()
    rc = context.run_config
    batch = parse_batch(str(rc["batch"]))
    expected = int(rc.get("partners", MIN_PARTNERS))  # type: ignore[arg-type]
    timeout = float(rc.get("timeout", 600))  # type: ignore[arg-type]
    if expected < MIN_PARTNERS:
        raise ConfigError(f"insights need at least {MIN_PARTNERS} partners (got {expected})")
    base: dict[str, Any] = {"data-root": str(rc["data-root"])} if "data-root" in rc else {}

    nodes = wait_for_partners(grid, expected, timeout, error=PartnerReplyError, poll=0.2)
    hello = _ask(grid, nodes, {**base, "op": "hello"}, timeout)
    partner_of = {node: str(r["partner-id"]) for node, r in hello.items()}
    if len(set(partner_of.values())) != len(partner_of):
        raise PartnerReplyError("two partner nodes reported the same partner id")
    tables = {partner_of[n]: json.loads(str(r["tables"])) for n, r in hello.items()}
    batch, skipped = plan_batch(batch, tables)
    noises = price_batch(batch)

    # On a coordinator the database comes from its environment (FEDINSIGHT_DB_URL), so deployment run
    # configs -- which partners also receive -- never carry a database URL.
    db_url = str(rc["db-url"]) if "db-url" in rc else default_db_url()
    ledger = PrivacyLedger(db_url)
    pids = sorted(partner_of.values())
    if "budget-epsilon" in rc:
        budget_delta = float(rc.get("budget-delta", batch.delta))  # type: ignore[arg-type]
        for pid in pids:
            ledger.ensure_budget(pid, float(rc["budget-epsilon"]), budget_delta)  # type: ignore[arg-type]
    spent = ledger.charge(pids, batch_event(noises), job_id=batch.batch_id, kind="query",
                          description="insights: " + ", ".join(q.name for q in batch.queries),
                          requester=batch.requester)

    wire = json.dumps(batch.wire({n: {"mechanism": q.mechanism, "multiplier": q.multiplier}
                                  for n, q in noises.items()}))
    answers = _ask(grid, nodes, {**base, "op": "compute", "batch": wire}, timeout)
    replies = [json.loads(str(answers[n]["results"])) for n in nodes]

    insights = release_batch(batch, noises, replies)
    ids = InsightStore(db_url).save(batch.batch_id, insights, requester=batch.requester)
    summary = _summary(batch, insights, skipped, spent, ledger, noises, time.perf_counter() - started, ids)
    if "out-dir" in rc:
        write_outputs(Path(str(rc["out-dir"])), insights, summary, batch)
    context.state["insights"] = ConfigRecord({"summary": json.dumps(summary)})
