"""The ``insights`` task: de-identified marketing insights with error bars, computed on the partners.

Segments, LTV tiers, funnels, A/B lift, golden hours, channel response and generic group-bys: each partner
bounds every customer's contribution and adds calibrated OpenDP noise on its own premises (:mod:`.client`);
the coordinator sums the noisy vectors, suppresses small groups on noisy counts and attaches 95 %
intervals (:mod:`.server`, :mod:`.results`). With ``noise-model = distributed-secagg`` each partner adds only
a discrete-Gaussian share and the coordinator sees only the SecAgg+ sum (:mod:`.distributed`,
:mod:`.secure_client`, :mod:`.secure_server`): about sqrt(K) less noise at the same epsilon, under the trust
model the job states. The catalogue and its presets are in :mod:`.catalogue`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError
from fedinsight.federation.budget import Charge
from fedinsight.federation.job import JobSettings
from fedinsight.federation.manifest import Manifest, Release
from fedinsight.federation.options import Options
from fedinsight.federation.secagg import secagg_releases
from fedinsight.federation.store import InsightStore
from fedinsight.federation.task import (
    Handler,
    Partner,
    Plan,
    Preview,
    Session,
    Simulated,
    Task,
    TaskResult,
    privacy_headline,
)
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.tasks.insights import (
    client,
    discovery,
    distributed,
    planner,
    secure_client,
    secure_server,
    server,
    simulate,
)
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

    def secure_fit(self):  # type: ignore[no-untyped-def]
        return secure_client.secure_fit

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        return client.hello_facts(partner, config)

    def hello_facts_release(self, options: Options) -> Release | None:
        return server.manifest_of_facts()

    def check(self, options: Options, job: JobSettings) -> None:
        super().check(options, job)
        opts: InsightsOptions = options  # type: ignore[assignment]
        opts.check_partners(job.partners)
        if opts.spec and not opts.accept_suppression:
            planner.refuse_if_mostly_suppressed(opts, job.partners)

    def preview(self, options: Options, partners: int) -> Preview | None:
        opts: InsightsOptions = options  # type: ignore[assignment]
        if not opts.spec:
            return None
        from fedinsight.tasks.insights.options import VALIDATION_DATE

        job = opts.spec_job(requester="plan", as_of=VALIDATION_DATE)
        return planner.preview_of(planner.plan_job(job, partners, only=opts.only_names(),
                                                   distributed=planner.noise_setting(opts, partners)))

    def plan(self, session: Session) -> Plan:
        options: InsightsOptions = session.options  # type: ignore[assignment]
        tables = {p.partner_id: json.loads(str(p.facts["tables"])) for p in session.partners.values()}
        job = options.spec_job(requester=session.job.requester) if options.spec else None
        if job is not None:
            batch, _ = job.batch(only=options.only_names())
            batch = batch.model_copy(update={"batch_id": session.job.job_id})
        else:
            batch = options.resolve(requester=session.job.requester, batch_id=session.job.job_id)
        batch, skipped = server.plan_batch(batch, tables)
        kept = [q.name for q in batch.queries]
        vocabs = [v for v in job.discover if any(n.vocabulary == v and n.query in kept for n in job.needs)] \
            if job is not None else []
        noises = server.price_batch(batch, extra={discovery.NAME: job.spec.discovery.weight} if vocabs else None)
        layouts = server.layout_of(batch)
        queries = {q.name: noises[q.name] for q in batch.queries}
        if options.distributed:
            options.check_partners(len(session.nodes))
            if batch.mechanism != "gaussian":
                raise ConfigError("--noise-model distributed-secagg adds discrete-Gaussian shares: the batch's "
                                  f"mechanism is {batch.mechanism}; use gaussian (or local noise)")
            releases = [server.manifest_of_facts(), *secagg_releases(
                update_event=server.batch_event(queries), count=1, mechanism=distributed.MECHANISM,
                what="every query's contribution-bounded vector (divided by its L2 bound) plus this partner's "
                     "discrete-Gaussian noise share, masked",
                sensitivity="per query: L2 1 per customer after division by the declared bound, plus the grid's "
                            "rounding (calibrated to C' = 1 + sqrt(d) Delta)")]
            trust = distributed.trust_text(len(session.nodes), options.honest_partners, options.max_dropouts)
            secure_server.encoding_of(batch, noises, layouts, options, len(session.nodes))  # refused before the charge
        else:
            releases = server.manifest_of(batch, noises, layouts, self.name)
            trust = distributed.LOCAL_TRUST
        charges = []
        if job is not None and vocabs:
            wire = discovery.wire_of(job, vocabs, noises[discovery.NAME], min_group_size=batch.min_group_size,
                                     delta=batch.delta)
            releases.insert(1, discovery.release_of(wire, noises[discovery.NAME]))
            charges.append(Charge("query", discovery.charged_event(noises[discovery.NAME], wire["max_delta"]),
                                  f"insights key discovery: {', '.join(vocabs)}"))
            session.state["discovery"] = wire
        mechanism = distributed.MECHANISM if options.distributed else batch.mechanism
        charges.append(Charge("query", server.batch_event(queries), f"insights ({mechanism}; {trust}): "
                              + ", ".join(kept)))
        session.state.update(batch=batch, skipped=skipped, noises=noises, layouts=layouts, job=job, kept=kept,
                             zones=sorted({str(p.facts.get("timezone") or "UTC") for p in session.partners.values()}))
        summary: dict[str, Any] = {"epsilon_requested": batch.epsilon, "delta": batch.delta,
                                   "mechanism": mechanism, "noise_model": options.noise_model,
                                   "trust_model": trust}
        if options.distributed:
            summary.update(honest_partners=options.honest_partners or len(session.nodes),
                           max_dropouts=options.max_dropouts, max_customers=options.max_customers)
        if vocabs:
            summary["key_discovery_delta"] = session.state["discovery"]["max_delta"]
        return Plan(Manifest(self.name, tuple(releases)), charges, summary)

    def run(self, session: Session) -> TaskResult:
        batch: InsightBatch = session.state["batch"]
        noises, layouts = session.state["noises"], session.state["layouts"]
        keys = self._keys(session)
        if "discovery" in session.state:
            batch, layouts = self._discover(session, keys)
        options: InsightsOptions = session.options  # type: ignore[assignment]
        secagg: dict[str, Any] | None = None
        if options.distributed:
            enc = secure_server.encoding_of(batch, noises, layouts, options, len(session.nodes))
            summed, contributors = secure_server.secure_replies(session, batch, noises, layouts, enc)
            insights = server.release_batch(batch, noises, [summed], contributors=contributors,
                                            noise_model=options.noise_model)
            secagg = {**enc.as_dict(), "contributors": contributors}
            for name, entry in secagg["queries"].items():  # per unit of the query's vector: the sum vs local noise
                entry["noise_sd"] = round(enc.sum_noise_sd(name, contributors), 6)
                entry["local_noise_sd"] = round(noises[name].multiplier * layouts[name].l2 * len(session.nodes) ** 0.5,
                                                6)
        else:
            wire = json.dumps(batch.wire({q.name: {"mechanism": noises[q.name].mechanism,
                                                   "multiplier": noises[q.name].multiplier} for q in batch.queries}))
            answers = session.ask("query", "compute", config=session.config("compute", wire=wire,
                                                                             **{"epsilon-job": batch.epsilon}))
            replies = [server.replies_from(dict(answers[n].content[client.RESULTS]), batch, noises, layouts)
                       for n in session.nodes]
            insights = server.release_batch(batch, noises, replies)
        zones = session.state["zones"]
        for insight in insights:
            if insight["kind"] == "golden_hours":
                zone = insight["query"].get("timezone", "UTC")
                insight["result"]["zones"] = zones if zone == "local" else [zone]
        ids = InsightStore(session.job.ledger).save(batch.batch_id, insights, requester=batch.requester)
        ledger = PrivacyLedger(session.job.ledger)
        try:
            summary = server.summary_of(batch, insights, session.state["skipped"], session.spent, ledger, noises,
                                        time.perf_counter() - session.started, ids)
        finally:
            ledger.engine.dispose()
        summary.update(keys=keys, timezones=zones)
        summary["privacy"].update(noise_model=options.noise_model, mechanism=session.plan.summary["mechanism"]
                                  if session.plan else batch.mechanism,
                                  trust_model=session.plan.summary.get("trust_model", "") if session.plan else "")
        if secagg is not None:
            summary["privacy"]["secagg"] = secagg
        artifacts = {}
        if session.job.out_dir:
            artifacts["insights"] = str(server.write_insights(Path(session.job.out_dir), insights, summary, batch))
        return TaskResult(summary, artifacts)

    @staticmethod
    def _keys(session: Session) -> dict[str, Any]:
        """Where each vocabulary's keys came from (declared, a default, or to be discovered) and the keys."""
        job = session.state.get("job")
        if job is None:
            return {}
        wanted = {n.vocabulary for n in job.needs if n.query in session.state["kept"]}
        return {v: {"source": job.sources[v], "keys": job.declared.get(v, [])} for v in job.sources if v in wanted}

    @staticmethod
    def _discover(session: Session, keys: dict[str, Any]) -> tuple[InsightBatch, dict[str, Any]]:
        """Key discovery, then the batch with the keys found; the manifest learns the batch's shapes."""
        wire, job = session.state["discovery"], session.state["job"]
        batch: InsightBatch = session.state["batch"]
        answers = session.ask("query", "discover", config=session.config(
            "discover", wire=json.dumps(wire, ensure_ascii=False), **{"epsilon-job": batch.epsilon}))
        found = discovery.combine([discovery.parse_reply(str(answers[n].content[discovery.RECORD][discovery.RECORD]))
                                   for n in session.nodes], wire)
        for vocab, entries in found.items():
            keys[vocab] = {"source": "discovered", "keys": [e["key"] for e in entries], "found": entries,
                           "threshold": wire["threshold"], "delta": wire["max_delta"]}
        batch, skipped = job.batch({v: [e["key"] for e in entries] for v, entries in found.items()},
                                   only=session.state["kept"])
        batch = batch.model_copy(update={"batch_id": session.state["batch"].batch_id})
        session.state["skipped"] = session.state["skipped"] + skipped
        layouts = server.layout_of(batch)
        shapes = {name: (len(agg.vector()),) for name, agg in layouts.items()}

        def resized(manifest: Manifest) -> Manifest:
            return Manifest(manifest.task, tuple(
                replace(r, fields={n: shapes[n] for n in r.fields}) if r.reply == "compute"
                and set(r.fields) <= set(shapes) else r for r in manifest.releases))

        assert session.plan is not None
        session.plan.manifest = resized(session.plan.manifest)
        session.guard.replace(resized(session.guard.manifest))
        session.state.update(batch=batch, layouts=layouts)
        return batch, layouts

    def simulation_options(self, options: Options, sim: Simulated) -> dict[str, Any]:
        return simulate.simulation_options(options, sim)  # type: ignore[arg-type]

    def simulation_budget(self, options: Options) -> float:
        return simulate.DEFAULT_BUDGET

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        from fedinsight.report.page import currency_code
        from fedinsight.tasks.insights.report import insights_sections  # heavy: loads matplotlib

        document = json.loads((run_dir / "insights.json").read_text()) if (run_dir / "insights.json").is_file() \
            else None
        return insights_sections(document, currency_code(summary)) if document is not None else ([], [])

    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [(i["name"], f"epsilon {i['epsilon']:.3f}, {i['groups']} groups, {i['suppressed_groups']} suppressed")
                for i in summary.get("insights", [])]
        rows += [(f"skipped {s['name']}", s["reason"]) for s in summary.get("skipped", [])]
        for vocab, entry in (summary.get("keys") or {}).items():
            if entry.get("source") == "discovered":
                names = ", ".join(entry.get("keys") or []) or "none"
                rows.append((f"{vocab} (found privately)", f"{names} (at least ~{entry.get('threshold', 0):,.0f} "
                                                           "customers at one partner)"))
        if summary.get("timezones") and any(i.get("kind") == "golden_hours" for i in summary.get("insights", [])):
            rows.append(("partners' time zones", ", ".join(summary["timezones"])))
        return rows + privacy_headline(summary)


def plan_spec(spec: str | Path | dict[str, Any], partners: int, *, sizes: dict[str, int] | None = None,
              as_of: str | None = None, noise_model: str = "local") -> planner.SpecPlan:
    """The budget planner on a spec (TOML/JSON text, a file or a dict) for a federation of ``partners``, before
    anything is spent: ``plan.insights`` (per insight and cell: noise sd, 95 % interval, expected customers, chance
    of suppression), ``plan.warning()``, ``plan.split`` (a proposed budget split), ``plan.as_dict()``.
    ``sizes`` (``{"customers": 3300, "clicked": 400, ...}``) override the spec's ``[federation]`` table;
    ``noise_model="distributed-secagg"`` plans SecAgg+ noise shares (every partner honest, no drop-out, the
    default ``max-customers``)."""
    from fedinsight.tasks.insights.options import VALIDATION_DATE
    from fedinsight.tasks.insights.spec import Sizes, canonical, looks_like_spec_file, parse_spec

    if isinstance(spec, str) and looks_like_spec_file(spec):
        spec = Path(spec)  # a file name, on the caller's own machine
    options = InsightsOptions(spec=canonical(parse_spec(spec)), noise_model=noise_model)
    job = options.spec_job(requester="plan", as_of=as_of or VALIDATION_DATE)
    return planner.plan_job(job, partners, sizes=Sizes(**sizes) if sizes else None,
                            source="given to plan_spec" if sizes else "declared in the spec",
                            distributed=planner.noise_setting(options, partners))


TASK = InsightsTask()
__all__ = ["TASK", "InsightsTask", "dp_event", "plan_spec"]
