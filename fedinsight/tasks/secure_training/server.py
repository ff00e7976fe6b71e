"""Coordinator side of secure training: SecAgg+ around per-partner DP-SGD.

DP-SGD bounds what the *released model* reveals about a customer, but without secure aggregation the
coordinator would still see each partner's individual update every round. With SecAgg+ each partner masks
its update with pairwise masks (agreed by Diffie-Hellman with its neighbours) and a private mask
(secret-shared with them); the masks cancel only in the sum, and the coordinator can remove the masks of
a partner that dropped out mid-round from the shares the others hold. So this code only ever receives
masked vectors and their modular sum (``tests/flows/secure_training`` inspects every message).

The job was charged (``rounds x local-steps`` DP-SGD steps per partner) by the framework before this runs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fedinsight.core.errors import ConfigError
from fedinsight.federation import progress
from fedinsight.federation.secagg import TimedRounds, guarded, strict_workflow
from fedinsight.federation.task import Session
from fedinsight.models.dp_logreg import get_weights, make_model
from fedinsight.tasks.secure_training.client import NUM_FEATURES
from fedinsight.tasks.secure_training.options import SecureTrainingOptions


def train(session: Session, *, secure: bool = True, init_weights: list[np.ndarray] | None = None) -> dict[str, Any]:
    """The rounds; returns the task's part of the summary. ``secure=False`` (plain FedAvg: the coordinator sees
    every update) exists only so ``benchmarks/deploy.py`` can time both side by side."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import Context, RecordDict
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
    from flwr.server.workflow.default_workflows import default_fit_workflow

    options: SecureTrainingOptions = session.options  # type: ignore[assignment]
    partners = len(session.nodes)
    init = init_weights if init_weights is not None else get_weights(make_model(NUM_FEATURES))

    def fit_config(rnd: int) -> dict[str, Any]:
        progress.report("rounds", rnd - 1, options.rounds)
        return session.config("fit", round=rnd)

    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=partners, min_evaluate_clients=0,
        min_available_clients=partners, initial_parameters=ndarrays_to_parameters(init),
        on_fit_config_fn=fit_config, accept_failures=True,
    )
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=options.rounds), strategy=strategy)
    fit = strict_workflow(
        num_shares=options.num_shares(partners), reconstruction_threshold=options.threshold(partners),
        clipping_range=options.clipping_range,
        # Every partner reports weight 1; max-weight 1 keeps the weighting factor from scaling the update
        # down before quantisation (Flower's default 1000 would cost three digits of precision).
        max_weight=1.0, timeout=session.job.timeout) if secure else default_fit_workflow
    rounds = TimedRounds(fit)
    started = time.perf_counter()
    DefaultWorkflow(fit_workflow=rounds)(guarded(session.grid, session.guard), legacy)
    elapsed = time.perf_counter() - started
    progress.report("rounds", options.rounds, options.rounds)

    weights = parameters_to_ndarrays(
        compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True))
    if all(np.array_equal(w, i) for w, i in zip(weights, init, strict=True)):
        raise ConfigError("secure aggregation produced no update (too many partners dropped out?)")
    return {
        "rounds": options.rounds, "secure": secure, "num_shares": options.num_shares(partners),
        "threshold": options.threshold(partners),
        "timing": {"rounds_s": round(elapsed, 3), "round_s": [round(r, 4) for r in rounds.seconds]},
        "weights": [float(v) for w in weights for v in np.ravel(w)],
    }
