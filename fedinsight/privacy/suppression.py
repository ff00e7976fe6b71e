"""Minimum group size: groups with too few customers are not released.

Why noisy counts: deciding suppression on the *exact* count would itself be a release -- "this group
vanished, so it has fewer than 50 people" -- that no noise protects. Deciding on the already-released
noisy count is post-processing of a DP output and leaks nothing more. The price is that a group near
the threshold is sometimes shown and sometimes hidden; that is the point.

Optional confidence margin: with much noise, the plain ``noisy >= 50`` test releases a group of 10
people whenever the noise happens to add 40 -- often, once ten partners each add their own noise.
``margin_sd = 1.645`` releases a group only when its noisy count clears the minimum with 95 % one-sided
confidence (``noisy >= min_group_size + 1.645 × noise_sd``): a group truly below the minimum is then
released at most ~5 % of the time, still deciding on the noisy count alone. The price is selection
bias: released cells near the bar are those whose noise happened to be positive, so their 95 %
intervals cover less often (about 91 % instead of 95 % on a small federation). The default is 0, the
plain rule; an operator who prefers stricter hiding to calibrated intervals can raise it.

Also a rule for everything derived: no released number may depend on a suppressed count (shares are
taken over released groups only, a rate needs both its numerator and denominator released), so a
suppressed value cannot be recovered by subtraction from other released numbers.

The default of 50 customers is the anchor of Google Ads Data Hub's aggregation threshold.
"""

from __future__ import annotations

import numpy as np

from fedinsight.core.errors import ConfigError

DEFAULT_MIN_GROUP_SIZE = 50
MIN_GROUP_FLOOR = 10
"""No job, spec, batch or API request may set a smaller minimum group size: a noisy count is DP whatever the
minimum, but a released group of a handful of customers invites reading individuals into it (and a group of 1
is one customer's row, noise or not). Partners and operators can only raise it."""


def check_min_group_size(value: object) -> int:
    """A valid minimum group size (a whole number of customers, at least 1; user-facing settings are held to
    :data:`MIN_GROUP_FLOOR` where they are read)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ConfigError(f"min_group_size must be a whole number of customers >= 1 (got {value!r})")
    return int(value)


CONFIDENCE_95 = 1.6448536269514722
"""One-sided 95 % normal quantile: the margin (in noise standard deviations) for 95 % confidence."""


def suppressed(noisy_counts: np.ndarray, min_group_size: int, noise_sd: np.ndarray | float = 0.0,
               margin_sd: float = 0.0) -> np.ndarray:
    """Boolean mask: which groups to suppress, decided on their *noisy* customer counts.

    A group is released only if ``noisy >= min_group_size + margin_sd × noise_sd`` (see the module
    docstring); the default ``margin_sd = 0`` is the plain threshold.
    """
    check_min_group_size(min_group_size)
    if not (np.isfinite(margin_sd) and margin_sd >= 0):
        raise ConfigError(f"suppression margin must be a number of standard deviations >= 0 (got {margin_sd})")
    counts = np.asarray(noisy_counts, dtype=float)
    threshold = min_group_size + margin_sd * np.asarray(noise_sd, dtype=float)
    return ~(counts >= threshold)  # NaN counts are suppressed too
