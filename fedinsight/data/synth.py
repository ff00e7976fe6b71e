"""Seeded synthetic partner data with planted ground truth.

Why it exists: the federation, the privacy machinery and the models need data whose right answers are
known. This generator writes the five canonical tables (see :mod:`fedinsight.data.schema`) for K
partners and, *outside* the partner folders, the truth it planted:

- every customer has a hidden **segment** (champions, loyal, potential, at_risk, hibernating) and a
  latent purchase rate λ (gamma distributed, segment-dependent). The same λ drives purchases before
  and after ``cutoff``, so calibration-period frequency/recency predicts buying again after it
  (the propensity signal);
- each customer has one or two favourite categories that drive both purchases and item interactions
  (the recommendation signal; item popularity is Zipf distributed);
- each campaign runs a funnel exposure -> click -> participate -> convert whose step rates depend on
  the channel and the hidden segment, with a 50/50 A/B split and a known multiplicative lift on
  conversion for arm B;
- event hours follow a segment-specific "golden hour" distribution;
- with ``creatives`` each funnel exposure shows one of three creatives and each segment clicks more on its
  favourite (:mod:`fedinsight.data.synth_creatives`); with ``offers`` an uplift campaign with known per-customer
  effects is added (:mod:`fedinsight.data.synth_uplift`).

Determinism: every random number comes from ``numpy.random.Generator`` streams derived from
``seed``. Customers are generated in fixed blocks of :data:`BLOCK_CUSTOMERS`, each block with its own
stream, so the output depends on the seed and the content options only -- not on ``chunk_customers``
(which just sets how many blocks are held in memory before being written) nor on the output format.
The same configuration gives byte-identical files.

Scale: generation is vectorised per block and written chunk by chunk to per-partner Parquet (or CSV)
writers, so memory stays bounded by ``chunk_customers`` whatever the total size.

Files written (``write_synthetic``)::

    OUT/partner-0/{customers,transactions,interactions,items,events}.parquet   (or .csv)
    ...
    OUT/partner-{K-1}/...
    OUT/ground_truth.json
    OUT/ground_truth/customer_truth.parquet      (hidden segment / λ / propensity per customer_id)

A table a partner has no rows for (e.g. a one-customer partner without purchases) is not written,
because the validator rightly refuses empty files; ``ground_truth.json`` lists rows per partner.
Time stamps are naive UTC at whole seconds and lie in ``[start, end]`` (``end`` is a point in time:
``"2025-12-31"`` means midnight at the start of that day).
"""

from __future__ import annotations

from fedinsight.data.synth_base import (
    BLOCK_CUSTOMERS,
    CAMPAIGN_CHANNELS,
    CATEGORIES,
    SEGMENTS,
    SynthConfig,
)
from fedinsight.data.synth_partition import generate_partner_frames
from fedinsight.data.synth_write import write_synthetic

__all__ = [
    "BLOCK_CUSTOMERS",
    "CAMPAIGN_CHANNELS",
    "CATEGORIES",
    "SEGMENTS",
    "SynthConfig",
    "generate_partner_frames",
    "write_synthetic",
]
