"""The coordinator's distributed-noise round for the recommender: one SecAgg+ sum, one global DP step.

With ``noise-model = distributed-secagg`` a round is not "partners train, coordinator averages": each
partner sends (masked, through Flower's ``SecAggPlusWorkflow`` on the legacy path, the only one that runs
SecAgg+ in Flower 1.41) its customer-level clipped gradient sum on the item table plus its share of the
Gaussian noise (:mod:`fedinsight.privacy.distributed_dp`). The coordinator learns only the sum of the
shares — the full-batch DP-SGD gradient of the whole federation with noise N(0, (sigma C')^2) — and
takes the step itself: ``items -= dp_lr * (sum / N + reg * items)`` (N = all customers, public), then the
same James-Stein shrinkage by the known noise variance as the local-noise mode. Everything after the
sum is post-processing.

A round whose sum lacks noise shares (more partners dropped out than the job tolerates) is never
released: the partners refuse to unmask it and the job stops with :class:`SecureAggregationError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedinsight.core.errors import SecureAggregationError
from fedinsight.federation.secagg import secure_sum as shared_secure_sum
from fedinsight.federation.task import Session
from fedinsight.models.recommender import ItemParams
from fedinsight.privacy.distributed_dp import DistributedNoise, decode_sum
from fedinsight.tasks.recommend.options import PrivacyPlan


def encoding(job: Any, sizes: list[int], coordinates: int) -> DistributedNoise:
    """The job's encoding; noise is split over ``honest - max_dropouts`` shares (see docs/recommender.md)."""
    plan = PrivacyPlan.for_job(job, job.delta)
    return DistributedNoise.for_job(partners=job.partners, honest=job.honest - job.max_dropouts,
                                    noise_multiplier=plan.noise_multiplier, clip=job.clip,
                                    max_customers=max(sizes), coordinates=coordinates, rounds=job.rounds)


def secure_sum(session: Session, job: Any, config: dict[str, Any], items: ItemParams,
               enc: DistributedNoise, rnd: int) -> tuple[np.ndarray, int]:
    """Run one SecAgg+ round (:func:`fedinsight.federation.secagg.secure_sum`, the transport every task shares);
    returns the exact sum of the partners' noisy shares and how many it holds."""
    fit_config = {**config, **enc.as_config(), "phase": "secagg", "round": rnd}
    try:
        mean, contributors = shared_secure_sum(
            session.grid, session.guard, fit_config=fit_config, settings=enc.flower_settings(),
            partners=job.partners, max_dropouts=job.max_dropouts, timeout=job.timeout_s,
            initial=[items.as_matrix().astype(np.float64)])
    except SecureAggregationError as exc:
        raise SecureAggregationError(f"round {rnd}: {exc}") from None
    return decode_sum(mean[0], contributors, enc), contributors


def global_step(job: Any, items: ItemParams, total: np.ndarray, customers: int,
                enc: DistributedNoise) -> tuple[np.ndarray, float]:
    """The federation's full-batch DP-SGD update from the noisy sum, and the per-coordinate noise variance
    of that update (for shrinkage). Mirrors :meth:`LocalTrainer._dp_item_step` with SGD."""
    matrix = items.as_matrix().astype(np.float64)
    grad = total.reshape(matrix.shape) / max(customers, 1)
    update = np.empty_like(matrix)
    update[:, :-1] = -job.dp_lr * (grad[:, :-1] + job.reg * matrix[:, :-1])
    update[:, -1] = -job.dp_lr * grad[:, -1]
    noise_var = (job.dp_lr * enc.sum_noise_std / max(customers, 1)) ** 2
    if not job.shrink:
        noise_var = 0.0
    return update, noise_var
