"""The segments task's options, defined once (CLI flags, Python call, run config and summary derive from them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedinsight.core.errors import ConfigError
from fedinsight.federation.delta import HELP as delta_help
from fedinsight.federation.delta import provisional
from fedinsight.federation.options import Options, option
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE, MIN_GROUP_FLOOR
from fedinsight.tasks.segments.choose import parse_range
from fedinsight.tasks.segments.features import DEFAULT_FEATURES, parse_features
from fedinsight.tasks.segments.kmeans import NoisePlan, noise_plan

__all__ = ["MIN_GROUP_FLOOR", "SegmentsOptions"]  # the floor is the project's (fedinsight.privacy.suppression)


@dataclass(frozen=True)
class SegmentsOptions(Options):
    k: int = option(5, "Number of segments.", minimum=2, maximum=20)
    k_range: str = option("", "Choose the number of segments in this public range, e.g. 2-8, by an elbow rule on the "
                              "noisy initial histogram (free post-processing); overrides --k.")
    iterations: int = option(5, "Lloyd iterations (each one a noisy count and sum release per partner).",
                             minimum=1, maximum=20)
    epsilon: float = option(1.0, "Epsilon the whole job spends per partner (initialisation, iterations, sizes).",
                            above=0, maximum=100)
    delta: float | None = option(None, delta_help, above=0, below=1)
    features: str = option(DEFAULT_FEATURES, "Comma-separated customer features: recency, frequency, monetary, "
                                             "basket, tenure, evening, funnel (deepest campaign stage); "
                                             "channel:<name> / category:<name> (share of "
                                             "purchases, the name declared in --channels / --categories); "
                                             "channel-mix / category-mix (one share per declared name).")
    channels: str = option("", "Public comma-separated channel names the channel features may use, e.g. "
                               "app,web,store (each partner's own channel values; others count in no share).")
    categories: str = option("", "Public comma-separated category names the category features may use, e.g. "
                                 "books,toys.")
    as_of: str = option("", "Reference date: only purchases strictly before it count (default: a built-in "
                            "dataset's or a synthetic folder's).")
    min_group_size: int = option(DEFAULT_MIN_GROUP_SIZE, f"Segments with a smaller noisy size are not reported "
                                 f"(at least {MIN_GROUP_FLOOR}).", minimum=MIN_GROUP_FLOOR)
    grid: int = option(0, "Cells per feature of the initialisation histogram (0: 6 for up to 3 features, 4 for 4, "
                          "3 for more).",
                       minimum=0, maximum=10)
    seed: int = option(0, "Public seed of the coordinator's k-means++ on the noisy histogram (no data, no noise).")

    def validate(self) -> None:
        parse_features(self.features, self.channels, self.categories)
        parse_range(self.k_range)
        if self.as_of:
            import pandas as pd

            try:
                pd.Timestamp(self.as_of)
            except (ValueError, TypeError):
                raise ConfigError(f"--as-of {self.as_of!r} is not a date (use YYYY-MM-DD)") from None
        if self.grid_size ** self.dim > 5_000:
            raise ConfigError(f"--grid {self.grid_size} with {self.dim} features makes "
                              f"{self.grid_size ** self.dim} cells; use a smaller grid (at most 5000 cells)")

    @property
    def names(self) -> tuple[str, ...]:
        return parse_features(self.features, self.channels, self.categories)

    @property
    def k_max(self) -> int:
        """The most segments the job can release (the manifest's shapes before the coordinator picks k)."""
        bounds = parse_range(self.k_range)
        return bounds[1] if bounds else self.k

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def grid_size(self) -> int:
        return self.grid or (6 if self.dim <= 3 else 4 if self.dim == 4 else 3)

    @property
    def sum_bound(self) -> float:
        """L2 bound of one customer's vector (every coordinate in [0, 1])."""
        return math.sqrt(self.dim)

    def noise(self) -> NoisePlan:
        return noise_plan(self.epsilon, provisional(self.delta), self.iterations)
