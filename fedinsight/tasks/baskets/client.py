"""The partner side of baskets: ``query.baskets`` phases ``items`` (round 1) and ``pairs`` (round 2).

The partner counts its purchases per customer and item in its engine (:mod:`.purchase_scan`), works out the noise
and the threshold from the job's public options *itself* (:mod:`.noise`), passes each release through its own
budget gate and adds OpenDP noise (OS entropy). Round 1 sends only the items whose noisy customer count clears
the threshold (OpenDP's Gaussian threshold mechanism): an item held by a handful of its customers shows with
probability at most the selection delta. Round 2 sends one noisy vector over the coordinator's public candidate
list, whose length is fixed by the job's options: what it holds never depends on which pairs exist here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, MetricRecord

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.federation.messages import config_of, reply
from fedinsight.federation.task import Partner, phase_of
from fedinsight.privacy.mechanisms import gaussian, threshold_for_delta, threshold_release
from fedinsight.tasks.baskets.basket import ITEM, baskets, candidate_counts, item_counts
from fedinsight.tasks.baskets.noise import release_bound
from fedinsight.tasks.baskets.options import BasketsOptions
from fedinsight.tasks.baskets.purchase_scan import engine_purchases

ITEMS_RECORD = "items"
COUNTS_RECORD = "counts"


def partner_rows(partner: Partner, options: BasketsOptions) -> Any:
    """This partner's purchases counted per customer and item (``customer_id, item, n``) by its engine (its rows are
    never loaded whole into pandas: :mod:`.purchase_scan`), or a ConfigError when it has none to count."""
    rows, source = engine_purchases(partner, options.as_of)
    if rows.empty:
        before = f" before {options.as_of}" if options.as_of else ""
        raise ConfigError(f"partner '{partner.partner_id}' has no purchases with an item ({source}){before}: nothing "
                          "to count; check its mapping or leave it out of this job")
    return rows


def selection_threshold(options: BasketsOptions) -> float:
    """Round 1's threshold: the smallest whole count whose OpenDP delta is at most the selection delta."""
    return _threshold(options.noise().selection, options.max_items, options.selection_delta)


@lru_cache(maxsize=64)
def _threshold(multiplier: float, max_items: int, delta: float) -> float:
    return threshold_for_delta("gaussian", multiplier, max_items, delta)


def noisy_items(rows: Any, options: BasketsOptions) -> list[list[Any]]:
    """Round 1: ``[[item, noisy customers], ...]`` of the items clearing the threshold, largest first, at most
    ``candidates`` of them (post-processing)."""
    released = threshold_release(item_counts(baskets(rows, options.max_items)), mechanism="gaussian",
                                 multiplier=options.noise().selection, keys_per_unit=options.max_items,
                                 threshold=selection_threshold(options), max_delta=options.selection_delta)
    found = sorted(released.counts.items(), key=lambda kv: (-kv[1], kv[0]))[: options.candidates]
    return [[item, int(round(value))] for item, value in found]


def noisy_counts(rows: Any, candidates: list[str], options: BasketsOptions) -> tuple[float, np.ndarray, np.ndarray]:
    """Round 2: (customers, per-candidate, per-pair) counts plus OpenDP Gaussian noise, one release of L2 bound
    sqrt(1 + L + L(L-1)/2)."""
    customers, items, pairs = candidate_counts(rows, candidates, options.candidates, options.max_items)
    values = np.concatenate([[customers], items, pairs])
    noisy = gaussian(values, release_bound(options.max_items), options.noise().counts).values
    m = options.candidates
    return float(noisy[0]), noisy[1:1 + m], noisy[1 + m:]


def candidates_of(config: dict[str, Any], options: BasketsOptions) -> list[str]:
    """The coordinator's candidate list (public: post-processing of round 1), checked."""
    try:
        items = json.loads(str(config["candidate-items"]))
    except (KeyError, ValueError, TypeError):
        raise ConfigError("a baskets pairs step needs the candidate items (a JSON list)") from None
    if (not isinstance(items, list) or len(items) > options.candidates or len(set(map(str, items))) != len(items)
            or not all(isinstance(v, str) and ITEM.fullmatch(v) for v in items)):
        raise ConfigError(f"the candidate items must be at most {options.candidates} distinct item names")
    return items


def query(msg: Message, partner: Partner) -> Message:
    config = config_of(msg)
    options = BasketsOptions.from_run_config(config)
    phase = phase_of(msg)
    events = options.noise().charged_events(options.selection_delta)
    if phase == "items":
        rows = partner_rows(partner, options)
        spend(partner, config, options, [events[0]], "baskets: item selection (round 1)")
        text = json.dumps(noisy_items(rows, options), ensure_ascii=False, separators=(",", ":"))
        return reply(msg, **{ITEMS_RECORD: ConfigRecord({ITEMS_RECORD: text})})
    if phase == "pairs":
        candidates = candidates_of(config, options)
        rows = partner_rows(partner, options)
        spend(partner, config, options, [events[1]], "baskets: item and pair counts (round 2)")
        customers, items, pairs = noisy_counts(rows, candidates, options)
        return reply(msg, **{COUNTS_RECORD: MetricRecord({"customers": [customers], "items": items.tolist(),
                                                          "pairs": pairs.tolist()})})
    raise ConfigError(f"unknown baskets step '{phase}' (expected items or pairs)")


def spend(partner: Partner, config: dict[str, Any], options: BasketsOptions, events: list[Any],
          description: str) -> None:
    partner.gate.spend(str(config["job-id"]), events, job_epsilon=options.epsilon, job_delta=options.delta,
                       kind="query", description=description)


def hello_facts(partner: Partner, config: dict[str, Any]) -> dict[str, Any]:
    """No facts; but before any budget is charged the partner checks that it has purchases with an item and that
    the whole job fits its own cap."""
    options = BasketsOptions.from_run_config(config)
    partner_rows(partner, options)
    refusal = partner.gate.binding(str(config["job-id"]), options.noise().events(), job_epsilon=options.epsilon,
                                   job_delta=options.delta)
    if refusal is not None:
        raise BudgetExceededError(refusal.reason + "; refused before the job started")
    return {}
