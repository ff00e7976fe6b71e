"""Coordinator side of baskets: pick the candidate items from round 1, count their pairs in round 2, estimate.

Everything here is post-processing of the partners' noisy releases (the job was charged on every ledger before
this runs). The candidate list is decided here, from round 1's noisy counts only, and sent to every partner: the
pairs counted are every pair of those items, so no pair is counted (or shown) because it exists at one partner.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedinsight.core.errors import PartnerReplyError
from fedinsight.federation import progress
from fedinsight.federation.task import Session
from fedinsight.tasks.baskets import rules
from fedinsight.tasks.baskets.basket import ITEM
from fedinsight.tasks.baskets.client import COUNTS_RECORD, ITEMS_RECORD, selection_threshold
from fedinsight.tasks.baskets.noise import release_bound
from fedinsight.tasks.baskets.options import BasketsOptions


def items_pattern(options: BasketsOptions) -> str:
    """The regex round 1's reply must match: ``[["item",123],...]``, at most ``candidates`` entries."""
    entry = r'\["' + ITEM.pattern + r'",-?\d{1,12}\]'
    return r"\[(?:" + entry + r"(?:," + entry + r"){0," + str(options.candidates - 1) + r"})?\]"


def parse_items(text: str, options: BasketsOptions) -> list[tuple[str, float]]:
    if not re.fullmatch(items_pattern(options), text):
        raise PartnerReplyError("a partner's baskets item list does not match the manifest")
    return [(str(k), float(v)) for k, v in json.loads(text)]


def select(replies: Sequence[list[tuple[str, float]]], options: BasketsOptions) -> list[dict[str, Any]]:
    """The candidates: items by their summed noisy round-1 counts (an item a partner did not release adds 0),
    those reaching the minimum group size, at most ``candidates``."""
    totals: dict[str, float] = {}
    partners: dict[str, int] = {}
    for found in replies:
        for item, count in found:
            totals[item] = totals.get(item, 0.0) + count
            partners[item] = partners.get(item, 0) + 1
    ranked = [k for k in sorted(totals, key=lambda k: (-totals[k], k)) if totals[k] >= options.min_group_size]
    return [{"item": k, "customers_noisy": round(totals[k]), "partners": partners[k]}
            for k in ranked[: options.candidates]]


def count_sd(options: BasketsOptions, partners: int) -> float:
    """The public sd of each summed round-2 count: the partners' sigma x sqrt(partners)."""
    return options.noise().counts * release_bound(options.max_items) * math.sqrt(partners)


def _summed(replies: dict[int, Any], key: str) -> np.ndarray:
    return np.sum([np.asarray(m.content[COUNTS_RECORD][key], dtype=float) for m in replies.values()], axis=0)


def run(session: Session) -> dict[str, Any]:
    """The workflow; returns the task's part of ``summary.json``."""
    options: BasketsOptions = session.options  # type: ignore[assignment]
    progress.report("rounds", 0, 2)
    first = session.ask("query", "items")
    selected = select([parse_items(str(m.content[ITEMS_RECORD][ITEMS_RECORD]), options) for m in first.values()],
                      options)
    candidates = [s["item"] for s in selected]
    progress.report("rounds", 1, 2)
    second = session.ask("query", "pairs", config=session.config("pairs", **{"candidate-items": json.dumps(
        candidates, ensure_ascii=False)}))
    progress.report("rounds", 2, 2)
    sd = count_sd(options, len(second))
    found = rules.estimate(candidates, float(_summed(second, "customers")[0]), _summed(second, "items"),
                           _summed(second, "pairs"), sd, options.min_group_size, options.top)
    plan = options.noise()
    return {**found, "candidates": selected, "max_items": options.max_items, "as_of": options.as_of or None,
            "selection": {"threshold": selection_threshold(options), "delta": options.selection_delta,
                          "noise_multiplier": plan.selection},
            "noise": {"selection": plan.selection, "counts": plan.counts, "rho": plan.rho,
                      "release_bound": release_bound(options.max_items)}}
