"""In-process runs of the baskets workflow (benchmarks, tests): the partners' own noising code and the
coordinator's own selection and estimates, on given purchase rows, without Flower or ledgers (callers price the
runs themselves)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.tasks.baskets import rules, server
from fedinsight.tasks.baskets.client import noisy_counts, noisy_items
from fedinsight.tasks.baskets.options import BasketsOptions


def federated_rules(partners: Sequence[pd.DataFrame], options: BasketsOptions) -> dict[str, Any]:
    """What the task would release for partners holding these ``(customer_id, item)`` rows (fresh OpenDP noise)."""
    first = [[(str(k), float(v)) for k, v in noisy_items(rows, options)] for rows in partners]
    selected = server.select(first, options)
    candidates = [s["item"] for s in selected]
    counts = [noisy_counts(rows, candidates, options) for rows in partners]
    found = rules.estimate(candidates, float(sum(c for c, _, _ in counts)), np.sum([i for _, i, _ in counts], axis=0),
                           np.sum([p for _, _, p in counts], axis=0), server.count_sd(options, len(partners)),
                           options.min_group_size, options.top)
    return {**found, "candidates": selected}
