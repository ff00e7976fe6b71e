"""The ``propensity`` task: repurchase propensity and LTV, trained across partners with DP-SGD.

Each partner trains on its own customers under Opacus DP-SGD (:mod:`.client`); the coordinator averages
with Flower's FedAvg and releases the moving average of the global models (:mod:`.server`,
:mod:`.strategy`). With ``noise-model = distributed-secagg`` each round is instead one full-batch step from a
SecAgg+ sum of clipped gradient sums and discrete-Gaussian noise shares (:mod:`.distributed`,
:mod:`.secure_client`, :mod:`.secure_server`). Features and labels are fixed, public transforms of a partner's purchases
(:mod:`.features`); :mod:`.baselines` trains the centralized and BG/NBD models a simulation compares
with; :mod:`.scoring` scores a partner's own customers with a released model, on the partner.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from fedinsight.core.errors import ConfigError
from fedinsight.federation.job import JobSettings
from fedinsight.federation.lazy import Lazy
from fedinsight.federation.options import Options
from fedinsight.federation.task import (
    Handler,
    Partner,
    Plan,
    Session,
    Simulated,
    Task,
    TaskResult,
    privacy_headline,
)
from fedinsight.tasks.propensity.options import PropensityOptions

# The partner and coordinator sides import torch and Opacus: each is imported where it is first needed, so a
# ClientApp or CLI that only registers this task (every simulation's workers do) does not load them.
_CLIENT = "fedinsight.tasks.propensity.client"


class PropensityTask(Task):
    name = "propensity"
    title = "Repurchase propensity and LTV"
    purpose = "training"
    options: ClassVar[type[Options]] = PropensityOptions
    default_partners = 10

    def handlers(self) -> Mapping[str, Handler]:
        return {kind: Lazy(_CLIENT, kind) for kind in ("query", "train", "evaluate")}

    def check(self, options: Options, job: JobSettings) -> None:
        from fedinsight.tasks.propensity import distributed, recalibrate

        super().check(options, job)
        if options.distributed and job.partners:  # type: ignore[attr-defined]  # trust settings and grids fit
            distributed.encoding(options, job.partners)  # type: ignore[arg-type]
            for release in distributed.RELEASES:
                if release != "evaluate" or options.eval_releases:  # type: ignore[attr-defined]
                    distributed.release_encoding(options, job.partners, release)  # type: ignore[arg-type]
        opts: PropensityOptions = options  # type: ignore[assignment]
        if opts.recalibrate_from:  # before any folder is written or anyone is contacted (the plan checks again)
            window = opts.window if opts.start and opts.cutoff and opts.end else None
            recalibrate.previous(opts.recalibrate_from, kind=opts.model, window=window)

    def hello_config(self, session: Session) -> dict[str, Any]:
        return {"secagg-partners": len(session.nodes)} if session.options.distributed else {}  # type: ignore[attr-defined]

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        """No facts: the partner checks, before anything is charged, that it can serve the job (its data reads
        and splits; the framework's delta rule has run before; with distributed noise also the trust model, the
        customer bound and its budget for the whole job)."""
        from fedinsight.tasks.propensity import client, secure_client

        options = PropensityOptions.from_run_config(config)
        client.prepare(partner, options, str(config.get("job-id", "")))
        if options.distributed:
            secure_client.check_before_charge(partner, options, config)
        return {}

    def secure_fit(self):  # type: ignore[no-untyped-def]
        return Lazy("fedinsight.tasks.propensity.secure_client", "secure_fit")

    def plan(self, session: Session) -> Plan:
        from fedinsight.tasks.propensity import server

        _ = session.options.window  # type: ignore[attr-defined]  # the window must be set before anyone computes
        return server.plan(session, self.name)

    def run(self, session: Session) -> TaskResult:
        from fedinsight.tasks.propensity import server

        return server.run(session)

    def simulation_dataset(self, dataset: str) -> None:
        if dataset == "movielens-100k":
            raise ConfigError("movielens-100k has no purchases; use --dataset cdnow, synthetic or a folder")

    def simulation_options(self, options: Options, sim: Simulated) -> dict[str, Any]:
        from fedinsight.tasks.propensity import simulate

        return simulate.window_options(options, sim)  # type: ignore[arg-type]

    def simulation_baselines(self, options: Options, sim: Simulated) -> dict[str, Any]:
        from fedinsight.tasks.propensity import simulate

        return simulate.baselines(options, sim, self.purpose)  # type: ignore[arg-type]

    def simulation_summary(self, summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.propensity import simulate

        return simulate.merge(summary, baselines)

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        from fedinsight.tasks.propensity.report import propensity_sections  # heavy: loads matplotlib

        return propensity_sections(summary)

    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        for name, m in summary.get("metrics", {}).items():
            if isinstance(m, dict) and name != "per_round" and m.get("auc") is not None:
                rows.append((f"{name}: AUC / lift@10% / LTV tier accuracy",
                             " / ".join("-" if m.get(k) is None else f"{m[k]:.4f}"
                                        for k in ("auc", "lift_top_decile", "tier_accuracy"))))
        evaluation = (summary.get("privacy") or {}).get("evaluation") or {}
        if evaluation.get("epsilon") is not None:
            rows.append(("evaluation (DP, in the charge)",
                         f"epsilon {evaluation['epsilon']:.3g} alone, {evaluation['releases']} release(s), "
                         f"noise multiplier {evaluation['noise_multiplier']:.3g}"))
        privacy = summary.get("privacy") or {}
        if privacy.get("noise_model") == "distributed-secagg":
            rows.append(("noise of every release (SecAgg+ sums)", str(privacy.get("trust_model", ""))))
        refused = privacy.get("refused") or {}
        if refused:
            rows.append(("refused (their own cap)", ", ".join(sorted(refused))))
        return rows + privacy_headline(summary)


TASK = PropensityTask()
__all__ = ["TASK", "PropensityOptions", "PropensityTask"]
