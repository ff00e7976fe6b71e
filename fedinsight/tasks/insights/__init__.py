"""The ``insights`` task: de-identified marketing insights with error bars, computed on the partners.

Segments, LTV tiers, funnels, A/B lift, golden hours, channel response and generic group-bys: each partner
bounds every customer's contribution and adds calibrated OpenDP noise on its own premises (:mod:`.client`);
the coordinator sums the noisy vectors, suppresses small groups on noisy counts and attaches 95 %
intervals (:mod:`.server`, :mod:`.results`). The catalogue and its presets are in :mod:`.catalogue`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from dp_accounting import dp_event

from fedinsight.federation.budget import Charge
from fedinsight.federation.manifest import Manifest, Release
from fedinsight.federation.options import Options
from fedinsight.federation.store import InsightStore
from fedinsight.federation.task import Handler, Partner, Plan, Session, Simulated, Task, TaskResult, privacy_headline
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks.insights import client, server, simulate
from fedinsight.tasks.insights.catalogue import InsightBatch
from fedinsight.tasks.insights.options import InsightsOptions


class InsightsTask(Task):
    name = "insights"
    title = "DP marketing insights"
    purpose = "analytics"
    options: ClassVar[type[Options]] = InsightsOptions
    min_partners = server.MIN_PARTNERS
    default_partners = 3

    def handlers(self) -> Mapping[str, Handler]:
        return {"query": client.query}

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        return client.hello_facts(partner, config)

    def hello_facts_release(self, options: Options) -> Release | None:
        return server.manifest_of_facts()

    def plan(self, session: Session) -> Plan:
        options: InsightsOptions = session.options  # type: ignore[assignment]
        batch = options.resolve(requester=session.job.requester, batch_id=session.job.job_id)
        tables = {p.partner_id: json.loads(str(p.facts["tables"])) for p in session.partners.values()}
        batch, skipped = server.plan_batch(batch, tables)
        noises = server.price_batch(batch)
        layouts = server.layout_of(batch)
        manifest = Manifest(self.name, tuple(server.manifest_of(batch, noises, layouts, self.name)))
        session.state.update(batch=batch, skipped=skipped, noises=noises, layouts=layouts)
        event = server.batch_event(noises)
        charge = Charge("query", event, "insights: " + ", ".join(q.name for q in batch.queries))
        return Plan(manifest, [charge], {"epsilon_requested": batch.epsilon, "delta": batch.delta,
                                         "mechanism": batch.mechanism})

    def run(self, session: Session) -> TaskResult:
        batch: InsightBatch = session.state["batch"]
        noises, layouts = session.state["noises"], session.state["layouts"]
        wire = json.dumps(batch.wire({n: {"mechanism": q.mechanism, "multiplier": q.multiplier}
                                      for n, q in noises.items()}))
        answers = session.ask("query", "compute", config=session.config("compute", wire=wire,
                                                                         **{"epsilon-job": batch.epsilon}))
        replies = [server.replies_from(dict(answers[n].content[client.RESULTS]), batch, noises, layouts)
                   for n in session.nodes]
        insights = server.release_batch(batch, noises, replies)
        ids = InsightStore(session.job.ledger).save(batch.batch_id, insights, requester=batch.requester)
        ledger = PrivacyLedger(session.job.ledger)
        try:
            summary = server.summary_of(batch, insights, session.state["skipped"], session.spent, ledger, noises,
                                        time.perf_counter() - session.started, ids)
        finally:
            ledger.engine.dispose()
        artifacts = {}
        if session.job.out_dir:
            artifacts["insights"] = str(server.write_insights(Path(session.job.out_dir), insights, summary, batch))
        return TaskResult(summary, artifacts)

    def simulation_options(self, options: Options, sim: Simulated) -> dict[str, Any]:
        return simulate.simulation_options(options, sim)  # type: ignore[arg-type]

    def simulation_budget(self, options: Options) -> float:
        return simulate.DEFAULT_BUDGET

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        from fedinsight.tasks.insights.report import insights_sections  # heavy: loads matplotlib

        document = json.loads((run_dir / "insights.json").read_text()) if (run_dir / "insights.json").is_file() \
            else None
        return insights_sections(document) if document is not None else ([], [])

    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [(i["name"], f"epsilon {i['epsilon']:.3f}, {i['groups']} groups, {i['suppressed_groups']} suppressed")
                for i in summary.get("insights", [])]
        rows += [(f"skipped {s['name']}", s["reason"]) for s in summary.get("skipped", [])]
        return rows + privacy_headline(summary)


TASK = InsightsTask()
__all__ = ["TASK", "InsightsTask", "dp_event"]
