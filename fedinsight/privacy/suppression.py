"""Minimum group size: groups with too few customers are not released.

Why noisy counts: deciding suppression on the *exact* count would itself be a release -- "this group
vanished, so it has fewer than 50 people" -- that no noise protects. Deciding on the already-released
noisy count is post-processing of a DP output and leaks nothing more. The price is that a group near
the threshold is sometimes shown and sometimes hidden; that is the point.

Also a rule for everything derived: no released number may depend on a suppressed count (shares are
taken over released groups only, a rate needs both its numerator and denominator released), so a
suppressed value cannot be recovered by subtraction from other released numbers.

The default of 50 customers is the anchor of Google Ads Data Hub's aggregation threshold.
"""

from __future__ import annotations

import numpy as np

from fedinsight.errors import ConfigError

DEFAULT_MIN_GROUP_SIZE = 50


def check_min_group_size(value: object) -> int:
    """A valid minimum group size (a whole number of customers, at least 1)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ConfigError(f"min_group_size must be a whole number of customers >= 1 (got {value!r})")
    return int(value)


def suppressed(noisy_counts: np.ndarray, min_group_size: int) -> np.ndarray:
    """Boolean mask: which groups to suppress, decided on their *noisy* customer counts."""
    check_min_group_size(min_group_size)
    counts = np.asarray(noisy_counts, dtype=float)
    return ~(counts >= min_group_size)  # NaN counts are suppressed too
