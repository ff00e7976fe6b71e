"""The baskets task's options, defined once (CLI flags, Python call, run config and summary derive from them)."""

from __future__ import annotations

from dataclasses import dataclass

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import HELP as delta_help
from fedinsight.federation.delta import provisional
from fedinsight.federation.options import Options, option
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_FLOOR
from fedinsight.tasks.baskets.noise import SELECTION_DELTA_SHARE, NoisePlan, noise_plan, pair_count

MAX_CANDIDATES = 100
"""Upper bound of ``--candidates`` (4,950 pair counts per partner reply)."""


@dataclass(frozen=True)
class BasketsOptions(Options):
    epsilon: float = option(1.0, "Epsilon the whole job spends per partner (item selection and pair counts).",
                            above=0, maximum=100)
    delta: float | None = option(None, delta_help + " Item selection adds a thousandth of it.", above=0, below=1)
    max_items: int = option(5, "Items (categories) per customer: each customer's most bought ones, the rest "
                               "ignored (bounds one customer's effect on every count).", minimum=2, maximum=12)
    candidates: int = option(60, "Items kept after the private selection; every pair of them is counted.",
                             minimum=2, maximum=MAX_CANDIDATES)
    min_group_size: int = option(DEFAULT_MIN_GROUP_SIZE, f"Items and pairs with fewer (noisy) customers are not "
                                 f"reported (at least {MIN_GROUP_FLOOR}).", minimum=MIN_GROUP_FLOOR)
    top: int = option(20, "Most rules shown (pairs whose lift is above 1 by a bound holding for all pairs at once, "
                          "ranked by that bound).", minimum=1, maximum=500)
    as_of: str = option("", "Only purchases strictly before this date (UTC, YYYY-MM-DD) count; empty: all.")

    def validate(self) -> None:
        if self.as_of:
            import pandas as pd

            try:
                pd.Timestamp(self.as_of)
            except (ValueError, TypeError):
                raise ConfigError(f"--as-of {self.as_of!r} is not a date (use YYYY-MM-DD)") from None

    @property
    def pairs(self) -> int:
        return pair_count(self.candidates)

    @property
    def selection_delta(self) -> float:
        """The thresholding's delta: the chance an item held by a handful of a partner's customers shows."""
        return provisional(self.delta) * SELECTION_DELTA_SHARE

    def noise(self) -> NoisePlan:
        return noise_plan(self.epsilon, provisional(self.delta))
