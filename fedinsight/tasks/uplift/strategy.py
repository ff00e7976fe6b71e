"""FedAvg for the uplift job: Flower's own strategy, with every reply held against the manifest.

Every partner trains in every round (DP accounting assumes each partner's own Poisson sampling, not a sample of
partners), weighs 1 in the average (no exact customer count is sent), and any error reply (a refusal at a
partner's budget gate, a failure) stops the job with that partner's typed error.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedinsight.federation import progress
from fedinsight.federation.messages import partner_error
from fedinsight.federation.task import Session
from fedinsight.models.uplift import ReleasedAverage
from fedinsight.tasks.uplift.client import ARRAYS


class UpliftFedAvg(FedAvg):
    def __init__(self, session: Session, rounds: int) -> None:
        super().__init__(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1, min_evaluate_nodes=1,
                         min_available_nodes=len(session.nodes), arrayrecord_key=ARRAYS, configrecord_key="config")
        self.session = session
        self.rounds = rounds
        options = session.options
        self.average = ReleasedAverage(rounds, float(getattr(options, "ema", 0.0)),
                                       float(getattr(options, "tail", 0.0)))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        progress.report("rounds", server_round - 1, self.rounds)
        cfg = ConfigRecord({**dict(config), "server-round": server_round})
        record = RecordDict({ARRAYS: arrays, "config": cfg})
        return [Message(content=record, message_type=f"train.{self.session.task.name}", dst_node_id=n)
                for n in sorted(self.session.nodes)]

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        for msg in replies:
            if msg.has_error():
                raise partner_error(str(msg.error.reason), partner=self.session.name(msg.metadata.src_node_id),
                                    what=f"train round {server_round}")
        kept = self.session.guard.check(replies, "train")
        if not kept:
            return None, None
        progress.report("rounds", server_round, self.rounds)
        arrays, metrics = super().aggregate_train(server_round, kept)
        if arrays is not None:
            self.average.add(server_round, {k: v.numpy() for k, v in arrays.items()})
        return arrays, metrics

    def released(self, fallback: ArrayRecord) -> ArrayRecord:
        """The released average of the global models (:class:`ReleasedAverage`; ``fallback`` when none entered it)."""
        if self.average.value is None:
            return fallback
        return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in self.average.value.items()})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []  # the one evaluation is a charged DP release after training (server.run)
