"""Coordinator side of secure-aggregation training: SecAgg+ around per-partner DP-SGD (task ``secagg``).

Why: DP-SGD bounds what the *released model* reveals about a customer, but without secure aggregation
the coordinator would still see each partner's individual update every round. With SecAgg+ each partner
masks its update with pairwise masks (agreed by Diffie-Hellman with its neighbours) and a private mask
(secret-shared with them); the masks cancel only in the sum, and the coordinator can remove the masks of
a partner that dropped out mid-round from the shares the others hold. So this code only ever receives
masked vectors and their modular sum (see ``tests/test_secagg.py``, which inspects every message the
server side receives).

Flower 1.41 runs SecAgg+ only on the legacy path (``LegacyContext`` + ``DefaultWorkflow`` with
``SecAggPlusWorkflow`` as fit workflow); ``num_shares`` is chosen odd (an even integer crashes the
client mod). Order of work:

1. wait for the expected partners, ask each which partner it is (``query.secagg_hello``);
2. charge the whole job — ``rounds x local-steps`` DP-SGD steps at the configured noise and sample rate —
   to every participating partner in the coordinator's ledger, atomically; an overspend is refused
   here, before any partner computes;
3. run the rounds; store the final model and a summary in the context (and, in a deployment, publish
   the summary as an insight).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

from fedinsight.core.errors import ConfigError
from fedinsight.federation.partners import wait_for_partners
from fedinsight.federation.secagg import TimedRounds, strict_workflow

TASK = "secagg"
DEFAULTS: dict[str, Any] = {
    "num-server-rounds": 3,
    "partners": 3,
    "noise-multiplier": 1.0,
    "max-grad-norm": 1.0,
    "sample-rate": 0.05,
    "local-steps": 20,
    "learning-rate": 0.5,
    "cutoff": "2025-06-30",
    "max-shares": 9,
    "secagg-timeout": 300.0,
    "wait-timeout": 120.0,
    "epsilon-budget": 10.0,
    "delta": 1e-6,
    "clipping-range": 8.0,
}
"""Run-config keys this task reads (``--run-config`` overrides any of them)."""


@dataclass(frozen=True)
class SecAggJob:
    """The validated settings of one secure-aggregation training job."""

    rounds: int
    partners: int
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    local_steps: int
    learning_rate: float
    cutoff: str
    max_shares: int
    secagg_timeout: float
    wait_timeout: float
    clipping_range: float

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> SecAggJob:
        cfg = {**DEFAULTS, **run_config}
        try:
            job = cls(rounds=int(cfg["num-server-rounds"]), partners=int(cfg["partners"]),
                      noise_multiplier=float(cfg["noise-multiplier"]), max_grad_norm=float(cfg["max-grad-norm"]),
                      sample_rate=float(cfg["sample-rate"]), local_steps=int(cfg["local-steps"]),
                      learning_rate=float(cfg["learning-rate"]), cutoff=str(cfg["cutoff"]),
                      max_shares=int(cfg["max-shares"]), secagg_timeout=float(cfg["secagg-timeout"]),
                      wait_timeout=float(cfg["wait-timeout"]), clipping_range=float(cfg["clipping-range"]))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"secagg job: bad run config value ({exc})") from None
        if job.partners < 3:
            raise ConfigError(f"secure aggregation needs at least 3 partners (got {job.partners})")
        if job.rounds < 1 or job.local_steps < 1:
            raise ConfigError("num-server-rounds and local-steps must be at least 1")
        if not 0 < job.sample_rate <= 1:
            raise ConfigError(f"sample-rate must be in (0, 1] (got {job.sample_rate})")
        if job.noise_multiplier <= 0 or job.max_grad_norm <= 0:
            raise ConfigError("noise-multiplier and max-grad-norm must be positive")
        if job.max_shares < 3:
            raise ConfigError("max-shares must be at least 3")
        return job

    @property
    def num_shares(self) -> int:
        """Odd, at most the number of partners and ``max_shares`` (an even integer crashes ``secaggplus_mod``)."""
        shares = min(self.partners, self.max_shares)
        return shares if shares % 2 else shares - 1

    @property
    def threshold(self) -> int:
        """Shares needed to reconstruct a secret: a majority of the shares (tolerates a minority dropping)."""
        return self.num_shares // 2 + 1

    def fit_config(self, server_round: int, extra: dict[str, Any]) -> dict[str, Any]:
        return {"round": server_round, "noise-multiplier": self.noise_multiplier,
                "max-grad-norm": self.max_grad_norm, "sample-rate": self.sample_rate,
                "local-steps": self.local_steps, "learning-rate": self.learning_rate, "cutoff": self.cutoff, **extra}

    def event(self):  # type: ignore[no-untyped-def]
        """The DpEvent one partner incurs over the whole job (what the ledger is charged up front)."""
        from fedinsight.privacy.ledger import dpsgd_event

        return dpsgd_event(self.noise_multiplier, self.sample_rate, self.rounds * self.local_steps)




def identify_partners(grid: Grid, nodes: list[int], timeout: float) -> dict[int, str]:
    """node id -> partner id (the ledger's name for it), asked of each node."""
    from fedinsight.tasks.secure_training.client import HELLO_ACTION

    msgs = [Message(RecordDict({"hello": ConfigRecord({})}), dst_node_id=n, message_type=f"query.{HELLO_ACTION}")
            for n in nodes]
    names: dict[int, str] = {}
    for reply in grid.send_and_receive(msgs, timeout=timeout):
        if reply.has_error():
            raise ConfigError(f"partner node {reply.metadata.src_node_id} did not identify itself: "
                              f"{reply.error.reason}")
        names[reply.metadata.src_node_id] = str(reply.content["hello"]["partner-id"])
    if len(set(names.values())) != len(names):
        raise ConfigError(f"two nodes claim the same partner id: {sorted(names.values())}")
    return names


def _ledger(run_config: dict[str, Any]):  # type: ignore[no-untyped-def]
    from fedinsight.privacy.ledger import PrivacyLedger

    return PrivacyLedger(str(run_config["ledger-url"]) if "ledger-url" in run_config else None)


def run(grid: Grid, context: Context) -> None:
    """Train the DP logistic-regression propensity model with SecAgg+ (see the module docstring)."""
    train(grid, context, secure=True)


def train(grid: Grid, context: Context, *, secure: bool = True, init_weights: list[np.ndarray] | None = None
          ) -> dict[str, Any]:
    """The training job; returns its summary. ``secure=False`` (plain FedAvg: the server sees every update)
    exists only so ``benchmarks/deploy.py`` can time both side by side — the ``secagg`` task never uses it."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
    from flwr.server.workflow.default_workflows import default_fit_workflow

    from fedinsight.models.dp_logreg import get_weights, make_model
    from fedinsight.tasks.secure_training.client import NUM_FEATURES

    run_config = dict(context.run_config)
    job = SecAggJob.from_run_config(run_config)
    job_id = str(run_config.get("job-id", f"run-{context.run_id}"))
    nodes = wait_for_partners(grid, job.partners, job.wait_timeout)
    names = identify_partners(grid, nodes, job.wait_timeout)

    ledger = _ledger(run_config)
    if "ledger-url" in run_config:  # simulation: budgets come with the job; a deployment configures them
        for pid in names.values():
            ledger.ensure_budget(pid, float(run_config.get("epsilon-budget", DEFAULTS["epsilon-budget"])),
                                 float(run_config.get("delta", DEFAULTS["delta"])))
    epsilon_after = ledger.charge(sorted(names.values()), job.event(), job_id=job_id, kind="training",
                                  description=f"secagg DP-SGD {job.rounds} rounds x {job.local_steps} steps",
                                  requester=str(run_config.get("requester", "")))

    extra = {k: run_config[k] for k in ("data-root",) if k in run_config}
    init = init_weights if init_weights is not None else get_weights(make_model(NUM_FEATURES))
    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=job.partners, min_evaluate_clients=0,
        min_available_clients=job.partners, initial_parameters=ndarrays_to_parameters(init),
        on_fit_config_fn=lambda rnd: job.fit_config(rnd, extra), accept_failures=True,
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=job.rounds), strategy=strategy)
    fit = strict_workflow(
        num_shares=job.num_shares, reconstruction_threshold=job.threshold, clipping_range=job.clipping_range,
        # Every partner reports weight 1; max-weight 1 keeps the weighting factor from scaling the update
        # down before quantisation (Flower's default 1000 would cost three digits of precision).
        max_weight=1.0, timeout=job.secagg_timeout) if secure else default_fit_workflow
    rounds = TimedRounds(fit)
    workflow = DefaultWorkflow(fit_workflow=rounds)
    started = time.perf_counter()
    workflow(grid, legacy)
    elapsed = time.perf_counter() - started

    weights = parameters_to_ndarrays(
        compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True))
    if all(np.array_equal(w, i) for w, i in zip(weights, init, strict=True)):
        raise ConfigError("secure aggregation produced no update (too many partners dropped out?)")
    summary = {
        "job-id": job_id, "rounds": job.rounds, "partners": sorted(names.values()), "num-shares": job.num_shares,
        "threshold": job.threshold, "seconds": round(elapsed, 3), "secure": secure,
        "round-seconds": [round(r, 4) for r in rounds.seconds],
        "epsilon-after": {p: round(e, 6) for p, e in sorted(epsilon_after.items())},
        "weights": [float(v) for w in weights for v in np.ravel(w)],
    }
    context.state["secagg"] = ConfigRecord({"summary": json.dumps(summary)})
    if run_config.get("out-dir"):  # a coordinator's job folder (or a simulation's --out): the run report reads it
        from fedinsight.core.files import atomic_output_file

        out = Path(str(run_config["out-dir"]))
        out.mkdir(parents=True, exist_ok=True)
        with atomic_output_file(out / "secagg.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    if run_config.get("publish", False):  # on a coordinator: the model summary joins the insight store
        from fedinsight.federation.store import InsightStore
        from fedinsight.privacy.ledger import compose_epsilon

        delta = float(run_config.get("delta", DEFAULTS["delta"]))
        InsightStore(None).save(job_id, [{
            "name": "propensity-model-secagg", "kind": "model", "epsilon": compose_epsilon([job.event()], delta),
            "delta": delta, "partners": len(names), "suppressed_groups": 0, "summary": summary,
            "query": {"task": TASK, "rounds": job.rounds, "noise-multiplier": job.noise_multiplier,
                      "sample-rate": job.sample_rate, "local-steps": job.local_steps},
        }], requester=str(run_config.get("requester", "")))
    return summary
