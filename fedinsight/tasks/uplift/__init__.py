"""The ``uplift`` task: a federated DP uplift model, its Qini evaluation, and an offer policy per partner.

From a campaign's exposures with arms (a hold-out ``control`` and one or more offers) and conversions, each
partner trains one logistic head per arm (``--heads``) under Opacus DP-SGD (:mod:`fedinsight.models.uplift`)
and Flower's FedAvg averages them (:mod:`.strategy`). The released model is evaluated on every partner's own
held-out customers by noisy (offer x arm x predicted-uplift bin) counts, from which the coordinator draws the
Qini curves (:mod:`fedinsight.models.qini`). Each partner then picks, for each of its customers, the offer with
the largest expected incremental value (uplift x order value - the offer's declared cost) or none
(:mod:`.policy`), and releases only the noisy counts of those choices by value tier. Everything is planned and
charged before any partner computes; a campaign without the declared arms or costs is refused before that.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from fedinsight.core.errors import ConfigError
from fedinsight.data.synth_uplift import OFFER_COSTS
from fedinsight.federation.job import JobSettings
from fedinsight.federation.lazy import Lazy
from fedinsight.federation.options import Options
from fedinsight.federation.task import Handler, Partner, Plan, Session, Simulated, Task, TaskResult, privacy_headline
from fedinsight.tasks.uplift.options import UpliftOptions

# The partner and coordinator sides import torch and Opacus: each is imported where it is first needed, so a
# ClientApp or CLI that only registers this task (every simulation's workers do) does not load them.
_CLIENT = "fedinsight.tasks.uplift.client"


def _num(value: object, digits: int = 4) -> str:
    """A released number for the terminal; "-" when the release left it undefined (stored as null)."""
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


class UpliftTask(Task):
    name = "uplift"
    title = "Uplift model and offer policy"
    purpose = "training"
    options: ClassVar[type[Options]] = UpliftOptions
    default_partners = 10

    def handlers(self) -> Mapping[str, Handler]:
        return {kind: Lazy(_CLIENT, kind) for kind in ("train", "query")}

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.uplift import client

        return client.hello_facts(partner, config)

    def hello_config(self, session: Session) -> dict[str, Any]:
        return {"secagg-partners": len(session.nodes)} if session.options.distributed else {}  # type: ignore[attr-defined]

    def secure_fit(self):  # type: ignore[no-untyped-def]
        return Lazy("fedinsight.tasks.uplift.secure_client", "secure_fit")

    def check(self, options: Options, job: JobSettings) -> None:
        super().check(options, job)
        if job.out_dir or job.data_root:  # a simulation's first, dataset-less check comes before its defaults
            options.require_costs()  # type: ignore[attr-defined]
        opts: UpliftOptions = options  # type: ignore[assignment]
        if opts.distributed and opts.offer_costs:  # the grid and trust settings fit, before anyone is contacted
            from fedinsight.tasks.uplift import distributed

            distributed.encoding(opts, job.partners)

    def plan(self, session: Session) -> Plan:
        from fedinsight.tasks.uplift import server

        options: UpliftOptions = session.options  # type: ignore[assignment]
        options.require_costs()
        plan = options.plan()
        return Plan.from_manifest(server.manifest(options, self.name, len(session.nodes)), kind="training",
                                  epsilon_planned=plan.planned_epsilon(), plan=plan.to_dict())

    def run(self, session: Session) -> TaskResult:
        from fedinsight.tasks.uplift import server

        options: UpliftOptions = session.options  # type: ignore[assignment]
        summary = server.run(session)
        artifacts = {}
        if session.job.out_dir:
            artifacts["model"] = str(server.write_model(Path(session.job.out_dir), summary, options))
        return TaskResult(summary, artifacts)

    # simulations
    def simulation_dataset(self, dataset: str) -> None:
        if dataset in ("cdnow", "movielens-100k"):
            raise ConfigError(f"{dataset} has no campaign with arms; use --dataset synthetic or a folder")

    def simulation_options(self, options: Options, sim: Simulated) -> dict[str, Any]:
        if getattr(options, "offer_costs", "") or not (sim.builtin and sim.dataset == "synthetic"):
            return {}
        return {"offer_costs": ",".join(f"{k}={v:g}" for k, v in OFFER_COSTS.items())}

    def simulation_baselines(self, options: Options, sim: Simulated) -> dict[str, Any]:
        from fedinsight.tasks.uplift.baselines import centralized

        return centralized(options, sim)  # type: ignore[arg-type]

    def simulation_summary(self, summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.uplift.baselines import merge

        return merge(summary, baselines)

    # report
    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        base = summary.get("baselines") or {}
        for offer, m in ((summary.get("metrics") or {}).get("federated") or {}).items():
            central = (base.get("centralized") or {}).get(offer, {}).get("qini")
            rows.append((f"{offer}: Qini / top {m['top_share']:.0%} vs random",
                         f"{_num(m.get('qini'))} / {_num(m.get('top_vs_random'), 2)}x"
                         + (f" (centralized non-private Qini {_num(central)})" if central is not None else "")))
        return rows + privacy_headline(summary)

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        from fedinsight.tasks.uplift.report import uplift_sections

        return uplift_sections(summary)


TASK = UpliftTask()
__all__ = ["TASK", "UpliftOptions", "UpliftTask"]
