"""The ``secure_training`` task: a DP-SGD logistic-regression propensity model trained under SecAgg+.

The coordinator sees only the masked sum of the partners' DP-SGD updates, never one partner's
(:mod:`.server`); each partner trains on log-RFM features of its own customers (:mod:`.client`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from fedinsight.federation.lazy import Lazy
from fedinsight.federation.manifest import PUBLIC, Manifest, Release
from fedinsight.federation.options import Options
from fedinsight.federation.secagg import secagg_releases
from fedinsight.federation.store import InsightStore
from fedinsight.federation.task import Handler, Partner, Plan, Session, Task, TaskResult, privacy_headline
from fedinsight.tasks.secure_training.options import SecureTrainingOptions

# The partner and coordinator sides import torch: each is imported where it is first needed, so a ClientApp or CLI
# that only registers this task (every simulation's workers do) does not load it.


class SecureTrainingTask(Task):
    name = "secure_training"
    title = "Propensity model trained under secure aggregation"
    purpose = "training"
    options: ClassVar[type[Options]] = SecureTrainingOptions
    min_partners = 3
    aliases = ("secagg", "secure-training")

    def simulation_budget(self, options: Options) -> float:
        return 10.0

    def handlers(self) -> Mapping[str, Handler]:
        return {}  # the query handler's only phase is the framework's hello; rounds go through SecAgg+

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.secure_training import client

        return client.hello_facts(partner, config)

    def secure_fit(self):  # type: ignore[no-untyped-def]
        return Lazy("fedinsight.tasks.secure_training.client", "secure_fit")

    def plan(self, session: Session) -> Plan:
        from fedinsight.tasks.secure_training import client

        options: SecureTrainingOptions = session.options  # type: ignore[assignment]
        releases = secagg_releases(
            update_event=options.round_event(), count=options.rounds,
            what=f"the masked DP-SGD update of a {client.NUM_FEATURES}-feature logistic regression",
            sensitivity=f"per-customer gradient clipped to L2 {options.max_grad_norm:g}; noise multiplier "
                        f"{options.noise_multiplier:g}, sample rate {options.sample_rate:g}, "
                        f"{options.local_steps} steps per round")
        manifest = Manifest(self.name, tuple(releases))
        return Plan.from_manifest(manifest, kind="training", epsilon_planned=options.epsilon,
                                  delta=options.delta, noise_model="SecAgg+ sum of local DP-SGD updates")

    def run(self, session: Session) -> TaskResult:
        from fedinsight.tasks.secure_training import server

        summary = server.train(session, secure=True)
        if session.job.publish:  # on a coordinator: the model summary joins the result store
            options: SecureTrainingOptions = session.options  # type: ignore[assignment]
            InsightStore(session.job.ledger).save(session.job.job_id, [{
                "name": "propensity-model-secure-training", "kind": "model", "epsilon": options.epsilon,
                "delta": options.delta, "partners": len(session.partners), "suppressed_groups": 0,
                "summary": summary, "query": {"task": self.name, **options.to_run_config()},
            }], requester=session.job.requester)
        return TaskResult(summary)

    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        timing = summary.get("timing", {})
        return [("rounds", str(summary.get("rounds"))),
                ("SecAgg+ shares / threshold", f"{summary.get('num_shares')} / {summary.get('threshold')}"),
                ("seconds per round", ", ".join(f"{s:.2f}" for s in timing.get("round_s", [])))] + \
            privacy_headline(summary)


TASK = SecureTrainingTask()
__all__ = ["TASK", "PUBLIC", "Release", "SecureTrainingTask"]
