"""The coordinator's distributed-noise training: SecAgg+ sums of the partners' shares, one global step each.

With ``noise-model = distributed-secagg`` a round is not "partners train, coordinator averages": every partner
sends, masked through Flower's ``SecAggPlusWorkflow`` (:func:`fedinsight.federation.secagg.secure_sum`, the
legacy path that runs SecAgg+ in Flower 1.41), its customers' clipped gradient sum plus its discrete-Gaussian
noise share (:mod:`.secure_client`). The coordinator learns only the sum -- the federation's full-batch DP-SGD
gradient with noise ``N(0, (sigma C')^2)`` -- and takes the step itself: ``w -= lr_t x sum / n``, where ``n`` is
the pooled *noisy* customer count of the statistics release and ``lr_t`` the same cosine schedule as local mode;
the released model is the same moving average of the global models. Everything after the sum is post-processing.

The feature statistics, the predicted-LTV histogram and the evaluation are each one more SecAgg+ sum
(:func:`release`): the coordinator gets the decoded sum of the partners' vectors and noise shares, never a
partner's own.

A sum that lost more partners than tolerated is never unmasked (the partners refuse, the job stops with
:class:`~fedinsight.core.errors.SecureAggregationError`, and says so).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedinsight.core.errors import SecureAggregationError
from fedinsight.federation import progress
from fedinsight.federation.secagg import secure_sum
from fedinsight.federation.task import Session
from fedinsight.models.metrics import EvalSummary
from fedinsight.privacy.distributed_dp import DistributedNoise, decode_sum
from fedinsight.tasks.propensity import distributed, evaluation
from fedinsight.tasks.propensity.options import PropensityOptions
from fedinsight.tasks.propensity.protocol import MIN_EVAL_CUSTOMERS
from fedinsight.tasks.propensity.strategy import cosine_lr


@dataclass
class SecureTraining:
    """What the secure rounds leave: the released weights, one row per round, the encoding."""

    weights: dict[str, np.ndarray]
    encoding: DistributedNoise
    per_round: list[dict[str, Any]] = field(default_factory=list)

    @property
    def contributors(self) -> list[int]:
        return [int(r["secagg_partners"]) for r in self.per_round]


def train(session: Session, cfg: dict[str, Any], initial: dict[str, np.ndarray], customers: float) -> SecureTraining:
    """``options.rounds`` SecAgg+ rounds from ``initial``; ``customers``: the pooled noisy training count."""
    options: PropensityOptions = session.options  # type: ignore[assignment]
    partners = len(session.nodes)
    enc = distributed.encoding(options, partners)
    weights = distributed.flatten(initial, options)
    ema: np.ndarray | None = None
    out = SecureTraining({}, enc)
    for rnd in range(1, options.rounds + 1):
        started = time.perf_counter()
        config = {**cfg, "phase": distributed.SECURE_PHASE, "server-round": rnd, "secagg-partners": partners}
        try:
            mean, contributors = secure_sum(session.grid, session.guard, fit_config=config,
                                            settings=enc.flower_settings(), partners=partners,
                                            max_dropouts=options.max_dropouts, timeout=session.job.timeout,
                                            initial=[weights.astype(np.float64)])
        except SecureAggregationError as exc:
            raise SecureAggregationError(f"propensity round {rnd}: {exc}") from None
        total = decode_sum(mean[0], contributors, enc)
        lr = cosine_lr(options.lr, rnd, options.rounds)
        weights = weights - lr * total / max(customers, 1.0)
        ema = weights if ema is None else options.ema * ema + (1 - options.ema) * weights
        out.per_round.append({"round": rnd, "secagg_partners": contributors, "lr": lr,
                              "secagg_s": round(time.perf_counter() - started, 3)})
        progress.report("rounds", rnd, options.rounds, training_partners=contributors, partners=partners)
    out.weights = distributed.unflatten(ema if ema is not None else weights, options)
    return out


@dataclass(frozen=True)
class SecureRelease:
    """One decoded SecAgg+ release: the sum, how many partners' shares it holds, and its noise sd per number."""

    release: str
    total: np.ndarray
    contributors: int
    encoding: DistributedNoise

    @property
    def noise_sd(self) -> float:
        """Noise sd per coordinate of the sum of ``contributors`` shares (in the vector's units)."""
        enc = self.encoding
        return enc.noise_multiplier * enc.sensitivity * float(np.sqrt(self.contributors / enc.honest))

    def as_dict(self) -> dict[str, Any]:
        """summary.json's row of this release: noise model, grid, shares, noise sd."""
        enc = self.encoding
        return {"noise_model": "distributed-secagg", "mechanism": distributed.RELEASE_MECHANISM,
                "contributors": self.contributors, "noise_shares": enc.honest, "coordinates": enc.coordinates,
                "l2": enc.clip, "sensitivity": round(enc.sensitivity, 9), "noise_multiplier": enc.noise_multiplier,
                "clipping_range": enc.clipping_range, "grid_step": enc.step, "tau": enc.tau,
                "noise_sd_of_the_sum": round(self.noise_sd, 6)}


def release(session: Session, cfg: dict[str, Any], name: str,
            weights: dict[str, np.ndarray] | None = None) -> SecureRelease:
    """One statistics / LTV-histogram / evaluation release as a SecAgg+ sum (``weights``: the model the partners
    predict with, sent as the round's parameters). Raises :class:`SecureAggregationError` if the sum lost more
    partners than tolerated (it is then never unmasked)."""
    options: PropensityOptions = session.options  # type: ignore[assignment]
    partners = len(session.nodes)
    enc = distributed.release_encoding(options, partners, name)
    config = {**cfg, "phase": distributed.release_phase(name), "secagg-partners": partners}
    initial = [distributed.flatten(weights, options)] if weights is not None else None
    try:
        mean, contributors = secure_sum(session.grid, session.guard, fit_config=config,
                                        settings=enc.flower_settings(), partners=partners,
                                        max_dropouts=options.max_dropouts, timeout=session.job.timeout,
                                        initial=initial)
    except SecureAggregationError as exc:
        raise SecureAggregationError(f"propensity {name}: {exc}") from None
    return SecureRelease(name, decode_sum(mean[0], contributors, enc), contributors, enc)


def read_evaluation(secure: SecureRelease, options: PropensityOptions, *,
                    tiers: bool) -> tuple[dict[str, float], EvalSummary | None]:
    """Pooled metrics from one SecAgg+ evaluation sum (post-processing only). The minimum group applies to the pooled
    held-out customers and is decided on the sum's *noisy* count: below it, the metrics are withheld."""
    values = evaluation.unscaled(secure.total, options.eval_caps)
    minimum = max(MIN_EVAL_CUSTOMERS, options.min_eval_customers)
    if evaluation.suppressed(values, minimum):
        out = dict.fromkeys(("auc", "log_loss", "ece", "lift_top_decile", "mae", "tier_accuracy"), float("nan"))
        out.update({"partners": 0.0, "partners_suppressed": float(secure.contributors), "suppressed": 1.0})
        return out, None
    metrics, summary = evaluation.read([values], tiers=tiers, noise_sd=secure.noise_sd)  # type: ignore[list-item]
    metrics.update({"partners": float(secure.contributors), "partners_suppressed": 0.0})
    return metrics, summary
