"""In-process runs of the uplift workflow (benchmarks, tests): the partners' own DP-SGD and noising code and the
coordinator's own post-processing, on given audiences, without Flower or ledgers (callers price runs themselves).

The average of the partners' weights here is FedAvg with equal weights -- what :class:`.strategy.UpliftFedAvg`
computes through Flower in a real job (every partner weighs 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fedinsight.models.uplift import ReleasedAverage, build_model, get_weights, set_weights
from fedinsight.privacy.distributed_dp import encode_noisy_share
from fedinsight.privacy.mechanisms import gaussian
from fedinsight.tasks.uplift import client, distributed, economics, server
from fedinsight.tasks.uplift.features import FEATURES, Audience
from fedinsight.tasks.uplift.options import UpliftOptions


def global_models(train_sets: list[Audience], options: UpliftOptions) -> Iterator[dict[str, np.ndarray]]:
    """The global model after each of ``options.rounds`` rounds of local DP-SGD and equal-weight averaging (what
    the coordinator sees; any average of them is post-processing, e.g. for comparing release rules). With
    ``--noise-model distributed-secagg``: :func:`distributed_models`."""
    if options.distributed:
        yield from distributed_models(train_sets, options)
        return
    model = build_model(len(FEATURES), len(options.arms), options.hidden, options.seed, options.knot_values,
                        options.heads, options.basis)
    weights = get_weights(model)
    for _ in range(options.rounds):
        updates = [get_weights(client.local_update(set_weights(model, weights), t, options)) for t in train_sets]
        weights = {k: np.mean([u[k] for u in updates], axis=0) for k in weights}
        yield weights


def distributed_models(train_sets: list[Audience], options: UpliftOptions) -> Iterator[dict[str, np.ndarray]]:
    """Distributed-noise training in process (:mod:`.distributed`): the whitening statistics (each partner's own
    Gaussian release, summed), then per round every partner's clipped gradient sum plus its discrete-Gaussian share
    (the partners' own code and OpenDP noise), summed as SecAgg+ would, and the coordinator's step; yields each
    round's global model converted to the ordinary model's weights."""
    plan = options.plan()
    gram = np.sum([gaussian(distributed.gram_vector(t.x, t.arm, options), distributed.GRAM_SENSITIVITY,
                            plan.gaussian_noise_multiplier).values for t in train_sets], axis=0)
    whitening = distributed.Whitening.from_gram(gram, options)
    enc = distributed.encoding(options, len(train_sets))
    vector = distributed.initial(options)
    for _ in range(options.rounds):
        total = np.sum([encode_noisy_share(distributed.gradient_sum(vector, whitening, t.x, t.arm, t.converted,
                                                                    options), enc) for t in train_sets], axis=0)
        vector = distributed.step(vector, total, whitening, options)
        yield distributed.to_model_weights(vector, whitening, options)


def federated_weights(train_sets: list[Audience], options: UpliftOptions) -> dict[str, np.ndarray]:
    """The weights a job would release after ``options.rounds`` rounds of local DP-SGD and averaging."""
    average = ReleasedAverage(options.rounds, options.ema, options.tail)
    for server_round, weights in enumerate(global_models(train_sets, options), start=1):
        average.add(server_round, weights)
    assert average.value is not None  # rounds >= 1, and the tail holds the last round at least
    return {k: np.asarray(v, dtype=np.float32) for k, v in average.value.items()}


def released(weights: dict[str, np.ndarray], tests: list[Audience], everyone: list[Audience],
             options: UpliftOptions) -> dict[str, Any]:
    """The evaluation and policy summaries from every partner's noisy releases (fresh OpenDP noise)."""
    model = set_weights(build_model(len(FEATURES), len(options.arms), options.hidden, options.seed,
                                    options.knot_values, options.heads, options.basis), weights)
    k = len(options.offers)
    m = options.plan().gaussian_noise_multiplier
    qini = np.sum([gaussian(client.evaluation_counts(model, t, k), client.eval_sensitivity(k), m).values
                   for t in tests], axis=0)
    pol = np.sum([gaussian(client.policy_counts(model, a, options), 1.0, m).values for a in everyone], axis=0)
    arms = np.sum([gaussian(economics.arm_totals(a, len(options.arms), options.order_value_cap),
                            economics.SENSITIVITY, m).values for a in everyone], axis=0)
    money = economics.summary(arms, options.offers, options.costs, options.order_value_cap,
                              m * economics.SENSITIVITY * np.sqrt(len(everyone)), options.min_group_size)
    return {"metrics": server.qini_summary(qini, options, len(tests)),
            "policy": server.policy_summary(pol, options, len(tests)), "economics": money}
