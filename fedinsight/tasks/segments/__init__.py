"""The ``segments`` task: federated DP k-means customer segmentation.

Each partner turns its customers' purchases into vectors in [0, 1]^d by public, fixed transforms
(:mod:`.features`); the federation runs DP Lloyd iterations on them (:mod:`.kmeans`: a noisy grid histogram
for the initial centres, then per-cluster noisy counts and sums, then noisy final sizes, all OpenDP Gaussian);
the coordinator only ever sees noisy sums. The result is ``segments.json`` (the centres, public) which each
partner uses to label its own customers on its own machine (``fedinsight partner export segments``), and a
report section describing each segment in words with its noisy size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.federation.manifest import Manifest, Release
from fedinsight.federation.options import Options
from fedinsight.federation.task import Handler, Partner, Plan, Session, Simulated, Task, TaskResult, privacy_headline
from fedinsight.tasks.segments import client, server
from fedinsight.tasks.segments.options import SegmentsOptions

BUILTIN_AS_OF = {"cdnow": "1998-07-01", "synthetic": "2026-01-01"}
"""The reference date of each built-in dataset (public: the end of its published window)."""


def manifest(options: SegmentsOptions) -> Manifest:
    """Every release of one job: the histogram, ``iterations`` x (counts, sums), the final sizes. With
    ``--k-range`` the shapes are the range's largest k until the coordinator has picked k (then
    :func:`fedinsight.tasks.segments.server.resize` narrows them); the noise, hence the charge, does not depend on k."""
    plan = options.noise()
    events = plan.events()
    k, d, cells = options.k_max, options.dim, options.grid_size ** options.dim
    gauss = "gaussian"
    return Manifest("segments", (
        Release("histogram", client.RECORD, {"histogram": (cells,)}, gauss, event=events[0],
                what=f"customers per cell of the public {options.grid_size}^{d} grid over the features "
                     "(for the initial centres)",
                sensitivity=f"L2 1 per customer (one cell each); noise multiplier {plan.init:.4g}"),
        Release("assign", "counts", {"counts": (k,)}, gauss, event=events[1], count=options.iterations,
                what="customers nearest each centre, in each Lloyd step",
                sensitivity=f"L2 1 per customer (one cluster each); noise multiplier {plan.counts:.4g}"),
        Release("assign", "sums", {"sums": (k * d,)}, gauss, event=events[2], count=options.iterations,
                what="the sum of the feature vectors nearest each centre, in each Lloyd step",
                sensitivity=f"L2 sqrt({d}) per customer (one vector in [0, 1]^{d}, in one cluster); noise "
                            f"multiplier {plan.sums:.4g}"),
        Release("sizes", client.RECORD, {"sizes": (k,)}, gauss, event=events[-1],
                what="customers nearest each final centre (the segment sizes)",
                sensitivity=f"L2 1 per customer; noise multiplier {plan.sizes:.4g}"),
    ))


class SegmentsTask(Task):
    name = "segments"
    title = "Customer segments (federated DP k-means)"
    purpose = "analytics"
    options: ClassVar[type[Options]] = SegmentsOptions

    def handlers(self) -> Mapping[str, Handler]:
        return {"query": client.query}

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        return client.hello_facts(partner, config)

    def plan(self, session: Session) -> Plan:
        options: SegmentsOptions = session.options  # type: ignore[assignment]
        if not options.as_of:
            raise ConfigError("segments needs --as-of (the reference date, e.g. 2026-01-01)")
        plan = options.noise()
        return Plan.from_manifest(manifest(options), kind="query", epsilon_planned=options.epsilon,
                                  delta=options.delta, rho=plan.rho,
                                  noise_model="local Gaussian (OpenDP) on every partner's counts and sums")

    def run(self, session: Session) -> TaskResult:
        summary = server.run(session)
        artifacts = {}
        if session.job.out_dir:
            artifacts["segments"] = str(server.write_model(Path(session.job.out_dir), summary,
                                                                     session.job.message_config()))
        return TaskResult(summary, artifacts)

    # simulations
    def simulation_options(self, options: Options, sim: Simulated) -> dict[str, Any]:
        if getattr(options, "as_of", ""):
            return {}
        if sim.builtin and sim.dataset in BUILTIN_AS_OF:
            return {"as_of": BUILTIN_AS_OF[sim.dataset]}
        if "window" in sim.facts:
            end = pd.Timestamp(sim.facts["window"]["end"])
            return {"as_of": (end + pd.Timedelta(days=1)).date().isoformat()}
        raise ConfigError(f"--as-of is required for the folder dataset {sim.dataset} (the reference date, "
                          "e.g. 2026-01-01)")

    def simulation_baselines(self, options: Options, sim: Simulated) -> dict[str, Any]:
        from fedinsight.tasks.segments.baselines import centralized

        return centralized(options, sim)  # type: ignore[arg-type]

    def simulation_summary(self, summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.segments.baselines import merge

        return merge(summary, baselines)

    # report
    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        for s in summary.get("segments", []):
            if s.get("suppressed"):
                rows.append((f"segment {s['segment']}", "suppressed (under the minimum group size)"))
            else:
                rows.append((f"segment {s['segment']}", f"{s['words']} (~{s['size']:,.0f} customers)"))
        choice = summary.get("k_choice") or {}
        if choice:
            rows.append(("number of segments", f"{choice['chosen']} (chosen in {choice['range'][0]}-"
                                               f"{choice['range'][1]}, no extra epsilon)"))
        ratio = (summary.get("baselines") or {}).get("cost_ratio")
        if ratio is not None:
            rows.append(("k-means cost vs non-private", f"{ratio:.3f}x"))
        return rows + privacy_headline(summary)

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        from fedinsight.tasks.segments.report import segments_sections

        return segments_sections(summary)


TASK = SegmentsTask()
__all__ = ["TASK", "SegmentsTask", "manifest"]
