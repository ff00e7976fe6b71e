"""The ``recommend`` task: a federated BPR-MF recommender with customer-level DP.

Partners train the shared item table from their own customers' interactions and keep the customer
embeddings at home (:mod:`.client`); the coordinator averages the item table's changes, or sums them
under SecAgg+ with distributed noise (:mod:`.server`, :mod:`.secure_server`, :mod:`.secure_client`).
:mod:`.simulate` holds the baselines a simulation compares with; serving runs on the partner (:mod:`.serving`: one
customer or all of them, cold start from the partner's own popular items per segment, :mod:`.segments`), from the
customer state it keeps in its vault (:mod:`.state`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from fedinsight.federation.job import JobSettings
from fedinsight.federation.lazy import Lazy
from fedinsight.federation.manifest import Release
from fedinsight.federation.options import Options
from fedinsight.federation.task import Handler, Partner, Plan, Session, Simulated, Task, TaskResult, privacy_headline
from fedinsight.tasks.recommend.options import RecommendOptions

# The partner and coordinator sides import torch: each is imported where it is first needed, so a ClientApp or CLI
# that only registers this task (every simulation's workers do) does not load it.
_CLIENT = "fedinsight.tasks.recommend.client"


class RecommendTask(Task):
    name = "recommend"
    title = "Recommendations (federated BPR-MF)"
    purpose = "recommendation"
    options: ClassVar[type[Options]] = RecommendOptions
    default_partners = 10

    def check(self, options: Options, job: JobSettings) -> None:
        super().check(options, job)
        options.check_partners(job.partners)  # type: ignore[attr-defined]

    def handlers(self) -> Mapping[str, Handler]:
        return {kind: Lazy(_CLIENT, kind) for kind in ("query", "train", "evaluate")}

    def hello_config(self, session: Session) -> dict[str, Any]:
        from fedinsight.tasks.recommend import server

        return server.catalogue_config(server.load_catalogue(session.options.catalogue_path))  # type: ignore[attr-defined]

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.recommend import client

        return client.hello_facts(partner, config)

    def hello_facts_release(self, options: Options) -> Release | None:
        return Release("hello", "facts", {"customers": None}, "public", what="the partner's number of customers",
                       reason="treated as public (see the job's manifest)")

    def secure_fit(self):  # type: ignore[no-untyped-def]
        return Lazy("fedinsight.tasks.recommend.secure_client", "secure_fit")

    def plan(self, session: Session) -> Plan:
        from fedinsight.tasks.recommend import server

        return server.plan(session, self.name)

    def run(self, session: Session) -> TaskResult:
        from fedinsight.tasks.recommend import server

        return server.run(session)

    def simulation_options(self, options: Options, sim: Simulated) -> dict[str, Any]:
        from fedinsight.tasks.recommend import simulate

        return simulate.simulation_options(options, sim, self.purpose)  # type: ignore[arg-type]

    def simulation_baselines(self, options: Options, sim: Simulated) -> dict[str, Any]:
        from fedinsight.tasks.recommend import simulate

        return simulate.simulation_baselines(options, sim, self.purpose)  # type: ignore[arg-type]

    def simulation_summary(self, summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.recommend import simulate

        return simulate.merge(summary, baselines)

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        from fedinsight.tasks.recommend.report import recommend_sections  # heavy: loads matplotlib

        return recommend_sections(summary)

    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        for name in ("federated", "federated_global", "served", "partner_alone", "centralized", "local_only",
                     "popularity"):
            m = summary.get("metrics", {}).get(name)
            if isinstance(m, dict) and m.get("hr@10") is not None:
                noise = f" (DP-noised, ± {m['ci95_halfwidth']:.3f} at 95 %)" if m.get("noised") else ""
                rows.append((f"{name}: HR@10 / NDCG@10", f"{m['hr@10']:.4f} / {m['ndcg@10']:.4f}{noise}"))
        return rows + privacy_headline(summary)


TASK = RecommendTask()
__all__ = ["TASK", "RecommendOptions", "RecommendTask"]
