"""The ``baskets`` task: federated DP market-basket rules (which items or categories are bought together).

Two rounds, both OpenDP Gaussian, charged together before any partner computes (:mod:`.noise`):

1. ``items``: each partner releases the items whose noisy customer count clears a threshold (OpenDP's Gaussian
   threshold mechanism; each customer counts towards at most ``max_items`` items, their most bought);
2. ``pairs``: the coordinator keeps the items with the largest summed noisy counts (the candidates, public) and
   every partner releases one noisy vector: its customers, its customers per candidate, per candidate pair.

The coordinator turns the sums into support, confidence and lift with 95 % intervals (:mod:`.rules`) and hides
anything under the minimum group size. ``docs/baskets.md`` explains the release, the bound and how to read lift.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from fedinsight.federation.manifest import Manifest, Release
from fedinsight.federation.options import Options
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
from fedinsight.tasks.baskets import client, server
from fedinsight.tasks.baskets.noise import pair_count, release_bound
from fedinsight.tasks.baskets.options import BasketsOptions


def manifest(options: BasketsOptions) -> Manifest:
    """Every release of one job: round 1's thresholded item list, round 2's count vector."""
    plan = options.noise()
    events = plan.charged_events(options.selection_delta)
    k, m = options.max_items, options.candidates
    return Manifest("baskets", (
        Release("items", client.ITEMS_RECORD, {client.ITEMS_RECORD: None}, "gaussian-threshold", event=events[0],
                kind="text", patterns={client.ITEMS_RECORD: server.items_pattern(options)},
                what=(f"the items whose noisy customer count reaches {client.selection_threshold(options):g} on the "
                      f"partner, with those noisy counts (at most {m}; for choosing the candidates)"),
                sensitivity=(f"L2 sqrt({k}) per customer (at most {k} items each, +1 each); noise multiplier "
                             f"{plan.selection:.4g}; plus delta {options.selection_delta:.2g} for thresholding")),
        Release("pairs", client.COUNTS_RECORD, {"customers": (1,), "items": (m,), "pairs": (pair_count(m),)},
                "gaussian", event=events[1],
                what=f"customers with a purchase, customers per candidate item ({m}) and per candidate pair "
                     f"({pair_count(m)})",
                sensitivity=(f"L2 sqrt(1 + {k} + {pair_count(k)}) = {release_bound(k):.4g} per customer (1 + at most "
                             f"{k} items + {pair_count(k)} pairs, +1 each); noise multiplier {plan.counts:.4g}")),
    ))


class BasketsTask(Task):
    name = "baskets"
    title = "Bought together (federated DP market-basket rules)"
    purpose = "analytics"
    options: ClassVar[type[Options]] = BasketsOptions
    reads_amounts = False  # counts customers per category: no money is added up

    def handlers(self) -> Mapping[str, Handler]:
        return {"query": client.query}

    def hello_facts(self, partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
        return client.hello_facts(partner, config)

    def plan(self, session: Session) -> Plan:
        options: BasketsOptions = session.options  # type: ignore[assignment]
        plan = options.noise()
        return Plan.from_manifest(manifest(options), kind="query", epsilon_planned=options.epsilon,
                                  delta=options.delta, selection_delta=options.selection_delta, rho=plan.rho,
                                  noise_model="local Gaussian (OpenDP) on every partner's item and pair counts")

    def run(self, session: Session) -> TaskResult:
        return TaskResult(server.run(session))

    def preview(self, options: Options, partners: int) -> Preview | None:
        from fedinsight.tasks.baskets.preview import preview_of

        return preview_of(options, partners)  # type: ignore[arg-type]

    # simulations
    def simulation_baselines(self, options: Options, sim: Simulated) -> dict[str, Any]:
        from fedinsight.tasks.baskets.baselines import exact

        return exact(options, sim)  # type: ignore[arg-type]

    def simulation_summary(self, summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
        from fedinsight.tasks.baskets.baselines import merge

        return merge(summary, baselines, BasketsOptions.of(summary.get("settings") or {}))

    # report
    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        for r in summary.get("rules", [])[:5]:
            a, b = r["items"]
            rows.append((f"{a} + {b}", f"bought together {r['lift']:.1f}x as often as by chance "
                                       f"({r['support']:.1%} of customers)"))
        if not rows and summary.get("pairs"):
            rows.append(("rules", f"none: no pair of the {len(summary['pairs']):,} shown is bought together clearly "
                                  "more often than by chance, given the privacy noise"))
        elif not rows:
            rows.append(("rules", "none: no pair reached the minimum group size"))
        error = (summary.get("baselines") or {}).get("support_error_pp_max")
        if error is not None:
            rows.append(("largest support error vs exact (simulation)", f"{error:.2f} percentage points"))
        hidden = summary.get("suppressed_pairs")
        if hidden:
            rows.append(("pairs not shown", f"{hidden:,} (under the minimum group size)"))
        return rows + privacy_headline(summary)

    def report_sections(self, summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
        from fedinsight.tasks.baskets.report import baskets_sections

        return baskets_sections(summary)


TASK = BasketsTask()
__all__ = ["TASK", "BasketsTask", "manifest"]
