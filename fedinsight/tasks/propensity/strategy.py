"""FedAvg for the propensity job: only consenting partners, inspected replies, pooled evaluation.

A subclass of Flower's Message-API ``FedAvg`` that

- sends ``train.propensity`` / ``evaluate.propensity`` messages (the ClientApp routes on the action);
- trains with every partner that is still in (no sampling: DP accounting assumes each partner's own
  sampling, and a partner that refused a round for lack of budget is left out of later rounds);
- checks every reply with :mod:`fedinsight.federation.guard` before aggregating it;
- averages weights by each partner's *noisy* customer count (released with the feature statistics), so
  no exact count is ever sent;
- decays the learning rate over the rounds (cosine) and keeps an exponential moving average of the
  global models, which is what is evaluated and released: averaging DP iterates removes noise for free
  (post-processing);
- aggregates evaluation as pooled metrics from the partners' summed *noisy* evaluation releases
  (:mod:`.evaluation`); evaluates after each round only when the job planned (and was charged) for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

import fedinsight.tasks.propensity.protocol as proto
from fedinsight.federation import progress
from fedinsight.federation.guard import ReplyGuard
from fedinsight.models.metrics import EvalSummary
from fedinsight.tasks.propensity import evaluation


def read_evaluations(replies: list[Message], partners: dict[int, PartnerTrack], *, tiers: bool,
                     noise_multiplier: float | None = None) -> tuple[dict[str, float], EvalSummary | None]:
    """Pooled metrics from the partners' noisy evaluation releases (post-processing only), and their sum.

    Suppressed partners (a noisy held-out count below their minimum: charged, nothing else sent) and refusals
    (their budget) are recorded on their track; ``tiers``: the tier matrix was evaluated (the final evaluation,
    after the LTV tiers are known)."""
    released: list[dict[str, object]] = []
    suppressed = 0
    for msg in replies:
        metrics = dict(msg.content[proto.METRICS])
        track = partners.get(msg.metadata.src_node_id)
        if track is not None and "refused" in metrics:  # a suppressed release was charged too: its status counts
            track.epsilon, track.epsilon_job = float(metrics["epsilon"]), float(metrics["epsilon-job"])  # type: ignore[arg-type]
        if int(metrics.get("suppressed", 0)):  # type: ignore[call-overload]  # decided on the noisy count
            suppressed += 1
            if track is not None:
                track.suppressed = True
            continue
        if track is not None and "refused" in metrics and int(metrics["refused"]) != 0:  # type: ignore[call-overload]
            track.refused = track.refused or {"phase": "evaluate", "code": float(metrics["refused"]),  # type: ignore[arg-type]
                                              "epsilon": float(metrics["epsilon"]),  # type: ignore[arg-type]
                                              "epsilon_would_be": float(metrics["epsilon-would-be"]),  # type: ignore[arg-type]
                                              "epsilon_budget": float(metrics["epsilon-budget"])}  # type: ignore[arg-type]
            continue
        released.append(metrics)
    if not released and not suppressed:
        return {}, None
    summary = None
    if released:
        out, summary = evaluation.read(released, tiers=tiers, noise_multiplier=noise_multiplier)
    else:
        out = {
        k: float("nan") for k in ("auc", "log_loss", "ece", "lift_top_decile", "mae", "tier_accuracy")}
    out["partners"] = float(len(released))
    out["partners_suppressed"] = float(suppressed)
    return out, summary


def cosine_lr(base: float, server_round: int, rounds: int) -> float:
    """Learning rate of round ``server_round`` (1-based): cosine decay from ``base`` towards 0."""
    return base * 0.5 * (1 + math.cos(math.pi * (server_round - 1) / max(rounds, 1)))


@dataclass
class PartnerTrack:
    """What the coordinator knows about one partner during the run (all of it from its replies)."""

    partner_id: str
    epsilon: float = 0.0
    epsilon_job: float = 0.0
    rounds_trained: int = 0
    suppressed: bool = False  # too few held-out customers to evaluate on
    refused: dict[str, float] | None = None
    failed: str | None = None


@dataclass
class RoundLog:
    per_round: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0


class PropensityFedAvg(FedAvg):
    """See the module docstring. ``partners`` maps node ids to partner names (from the hello phase)."""

    def __init__(
        self,
        *,
        partners: dict[int, PartnerTrack],
        shapes: dict[str, tuple[int, ...]],
        n_features: int,
        rounds: int,
        base_lr: float,
        ema: float,
        guard: ReplyGuard,
        task: str = proto.ACTION,
        evaluate_rounds: bool = False,
        eval_noise_multiplier: float | None = None,
    ) -> None:
        super().__init__(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1, min_evaluate_nodes=1,
                         min_available_nodes=len(partners), arrayrecord_key=proto.ARRAYS,
                         configrecord_key=proto.CONFIG)
        self.partners = partners
        self.shapes = shapes
        self.n_features = n_features
        self.rounds = rounds
        self.base_lr = base_lr
        self.ema_decay = ema
        self.guard = guard
        self.task = task
        self.evaluate_rounds = evaluate_rounds
        self.eval_noise_multiplier = eval_noise_multiplier
        self.log = RoundLog()
        self.ema: dict[str, np.ndarray] | None = None

    # --- who takes part ---------------------------------------------------------------------------
    def training_nodes(self) -> list[int]:
        return sorted(n for n, p in self.partners.items() if p.refused is None and p.failed is None)

    def evaluation_nodes(self) -> list[int]:
        return sorted(n for n, p in self.partners.items() if p.failed is None)

    def _construct_messages(self, record: RecordDict, node_ids: list[int], message_type: str) -> Iterable[Message]:
        return [Message(content=record, message_type=f"{message_type}.{self.task}", dst_node_id=n)
                for n in node_ids]

    def _note_failures(self, replies: list[Message]) -> None:
        for msg in replies:
            if msg.has_error() and msg.metadata.src_node_id in self.partners:
                self.partners[msg.metadata.src_node_id].failed = msg.error.reason

    # --- training ---------------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        cfg = ConfigRecord(dict(config))
        cfg["server-round"] = server_round
        cfg["lr"] = cosine_lr(self.base_lr, server_round, self.rounds)
        record = RecordDict({proto.ARRAYS: arrays, proto.CONFIG: cfg})
        return self._construct_messages(record, self.training_nodes(), "train")

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self._note_failures(replies)
        trained: list[Message] = []
        for msg in self.guard.check(replies, "train"):
            metrics = msg.content[proto.METRICS]
            track = self.partners[msg.metadata.src_node_id]
            track.epsilon, track.epsilon_job = float(metrics["epsilon"]), float(metrics["epsilon-job"])
            if int(metrics["refused"]) != 0:
                track.refused = {"round": float(server_round), "code": float(metrics["refused"]),
                                 "epsilon": float(metrics["epsilon"]),
                                 "epsilon_would_be": float(metrics["epsilon-would-be"]),
                                 "epsilon_budget": float(metrics["epsilon-budget"])}
                continue
            track.rounds_trained += 1
            self.log.train_seconds += float(metrics.get("train-seconds", 0.0))  # none in a DP job
            trained.append(msg)
        if not trained:
            return None, None
        arrays, metrics = super().aggregate_train(server_round, trained)
        if arrays is not None:
            current = {k: v.numpy() for k, v in arrays.items()}
            self.ema = current if self.ema is None else {
                k: self.ema_decay * self.ema[k] + (1 - self.ema_decay) * current[k] for k in current}
        return arrays, metrics

    def released_arrays(self, fallback: ArrayRecord) -> ArrayRecord:
        """The model the job releases: the moving average of the global models (or ``fallback``)."""
        if self.ema is None:
            return fallback
        return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in self.ema.items()})

    # --- evaluation -------------------------------------------------------------------------------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        if not self.evaluate_rounds:  # each evaluation is a charged DP release: per round only when planned
            return []
        cfg = ConfigRecord(dict(config))
        cfg["server-round"] = server_round
        record = RecordDict({proto.ARRAYS: self.released_arrays(arrays), proto.CONFIG: cfg})
        return self._construct_messages(record, self.evaluation_nodes(), "evaluate")

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = list(replies)
        self._note_failures(replies)
        kept = self.guard.check(replies, "evaluate") if replies else []
        result, _ = read_evaluations(kept, self.partners, tiers=False, noise_multiplier=self.eval_noise_multiplier)
        row = {"round": server_round, **result,
               "training_partners": len(self.training_nodes())}
        self.log.per_round.append(row)
        auc = result.get("auc")
        progress.report("rounds", server_round, self.rounds, auc=auc if isinstance(auc, float) else None,
                        training_partners=len(self.training_nodes()), partners=len(self.partners))
        return MetricRecord({k: float(v) for k, v in result.items()}) if result else None
