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
from fedinsight.federation.secagg import SecAggRoundFailed, guarded, strict_workflow, to_legacy_config
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
    """Run one SecAgg+ round; returns the exact sum of the partners' noisy shares and how many it holds."""
    from flwr.app import Context, RecordDict
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow

    fit_config = to_legacy_config({**config, **enc.as_config(), "phase": "secagg", "round": rnd,
                                   "max-dropouts": job.max_dropouts})

    class _Counting(FedAvg):
        """FedAvg over identical unmasked sums (SecAgg+ hands every result the same vector); counts them."""

        contributors = 0
        result: list[np.ndarray] | None = None

        def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
            self.contributors = len(results)
            if results:
                self.result = parameters_to_ndarrays(results[0][1].parameters)
            return super().aggregate_fit(server_round, results, failures)

    strategy = _Counting(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=job.partners, min_evaluate_clients=0,
        min_available_clients=job.partners,
        initial_parameters=ndarrays_to_parameters([items.as_matrix().astype(np.float64)]),
        on_fit_config_fn=lambda _rnd: fit_config, accept_failures=True,
    )
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy)
    settings = enc.flower_settings()
    workflow = strict_workflow(num_shares=1.0, reconstruction_threshold=0.5, max_weight=1.0,
                                clipping_range=float(settings["clipping_range"]),
                                quantization_range=int(settings["quantization_range"]),
                                modulus_range=int(settings["modulus_range"]), timeout=job.timeout_s)
    try:
        DefaultWorkflow(fit_workflow=workflow)(guarded(session.grid, session.guard), legacy)
    except SecAggRoundFailed as exc:
        raise SecureAggregationError(f"round {rnd}: {exc}; partners refuse to unmask a sum that lacks noise shares "
                                     "(a partner dropped out or refused: see the partners' logs)") from None
    if strategy.result is None or strategy.contributors < job.partners - job.max_dropouts:
        raise SecureAggregationError(f"round {rnd}: the secure sum holds {strategy.contributors} of "
                                     f"{job.partners} partners' shares; not released")
    return decode_sum(strategy.result[0], strategy.contributors, enc), strategy.contributors


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
