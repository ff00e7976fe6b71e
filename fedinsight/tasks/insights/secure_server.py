"""The coordinator's side of distributed-noise insights: one SecAgg+ sum per batch, released like a local one.

With ``noise-model = distributed-secagg`` the batch is not "every partner answers ``compute``": every partner
sends its bounded vectors plus a discrete-Gaussian noise share, masked, through Flower's ``SecAggPlusWorkflow``
(:func:`fedinsight.federation.secagg.secure_sum`, the legacy path that runs SecAgg+ in Flower 1.41). The
coordinator learns only the sum, decodes it per query (:mod:`.distributed`) and hands the release step
(:func:`.server.release_batch`) one summed "reply" per query whose ``noise_variance`` is the sum's: the
same suppression on noisy counts, the same intervals, from one Gaussian-like noise of about 1/sqrt(K) the
local mode's sd. Everything after the sum is post-processing.

A sum that lost more partners than tolerated is never unmasked (the partners refuse, the job stops with
:class:`~fedinsight.core.errors.SecureAggregationError`).
"""

from __future__ import annotations

import json
from typing import Any

from fedinsight.federation.secagg import secure_sum
from fedinsight.federation.task import Session
from fedinsight.privacy.allocation import QueryNoise
from fedinsight.tasks.insights.aggregates import LocalAggregate
from fedinsight.tasks.insights.catalogue import InsightBatch
from fedinsight.tasks.insights.distributed import InsightsEncoding, blocks_of, shares_of
from fedinsight.tasks.insights.options import InsightsOptions
from fedinsight.tasks.insights.secure_client import SECURE_PHASE


def encoding_of(batch: InsightBatch, noises: dict[str, QueryNoise], layouts: dict[str, LocalAggregate],
                options: InsightsOptions, partners: int) -> InsightsEncoding:
    """The batch's encoding from public numbers only (the partners derive the same from theirs)."""
    names = [q.name for q in batch.queries]
    return InsightsEncoding.for_batch(
        blocks_of(names, {n: layouts[n].vector().size for n in names}, {n: noises[n].multiplier for n in names},
                  {n: layouts[n].l2 for n in names}),
        partners=partners, shares=shares_of(partners, options.honest_partners, options.max_dropouts),
        max_customers=options.max_customers)


def secure_replies(session: Session, batch: InsightBatch, noises: dict[str, QueryNoise],
                   layouts: dict[str, LocalAggregate], enc: InsightsEncoding) -> tuple[dict[str, Any], int]:
    """Run the batch's SecAgg+ round; one summed reply per query (the shape :func:`.results.combine` takes) and
    how many partners' shares the sum holds."""
    options: InsightsOptions = session.options  # type: ignore[assignment]
    wire = json.dumps(batch.wire({q.name: {"mechanism": noises[q.name].mechanism,
                                           "multiplier": noises[q.name].multiplier} for q in batch.queries}))
    config = session.config(SECURE_PHASE, wire=wire, **{"epsilon-job": batch.epsilon,
                                                        "secagg-partners": enc.partners})
    mean, contributors = secure_sum(session.grid, session.guard, fit_config=config, settings=enc.flower_settings(),
                                    partners=enc.partners, max_dropouts=options.max_dropouts,
                                    timeout=session.job.timeout)
    sums = enc.decode(mean[0], contributors)
    out = {}
    for q in batch.queries:
        agg, noise = layouts[q.name], noises[q.name]
        out[q.name] = {"layout": agg.layout(), "values": sums[q.name].tolist(), "mechanism": noise.mechanism,
                       "multiplier": noise.multiplier, "sensitivity": agg.l2,
                       "noise_variance": enc.sum_noise_sd(q.name, contributors) ** 2}
    return out, contributors
