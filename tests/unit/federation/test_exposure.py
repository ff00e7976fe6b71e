"""Which partners may have released something private: a DP field in a reply, or no reply at all."""

from __future__ import annotations

import numpy as np
from dp_accounting import dp_event
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from support.fake_grid import InProcessGrid

from fedinsight.federation.exposure import Exposure, WatchedGrid
from fedinsight.federation.manifest import PUBLIC, Manifest, Release
from fedinsight.federation.messages import request

MANIFEST = Manifest("t", (
    Release("stats", "metrics", {"sums": (3,)}, "gaussian", event=dp_event.GaussianDpEvent(2.0)),
    Release("stats", "metrics", {"refused": None, "epsilon": None}, PUBLIC, reason="the partner's own accounting"),
    Release("train", "arrays", {}, "dp-sgd", kind="arrays", event=dp_event.GaussianDpEvent(1.0)),
))


def _app(behaviour: dict[int, str]):  # noqa: ANN202
    def app(msg: Message, context: Context) -> Message:
        what = behaviour[context.node_id]
        if what == "error":
            return Message(Error(code=0, reason="disk full"), reply_to=msg)
        if what == "refuse":
            return Message(RecordDict({"metrics": MetricRecord({"refused": 1, "epsilon": 0.5})}), reply_to=msg)
        if what == "weights":
            return Message(RecordDict({"arrays": ArrayRecord([np.array([0.1, 0.2])])}), reply_to=msg)
        if what == "empty":
            return Message(RecordDict({"arrays": ArrayRecord(), "note": ConfigRecord({})}), reply_to=msg)
        return Message(RecordDict({"metrics": MetricRecord({"sums": [1.0, 2.0, 3.0], "epsilon": 0.5})}),
                       reply_to=msg)

    return app


def test_only_partners_whose_replies_carry_dp_fields_or_never_came_are_exposed():
    behaviour = {100: "error", 101: "refuse", 102: "release", 103: "weights", 104: "empty", 105: "silent"}
    inner = InProcessGrid(_app(behaviour), len(behaviour))
    exposure = Exposure(MANIFEST)
    grid = WatchedGrid(inner, exposure)
    replies = grid.send_and_receive([request("query", "t", n, {"phase": "stats"}) for n in behaviour
                                     if behaviour[n] != "silent"])
    assert len(replies) == 5 and not any(r.has_error() for r in replies if r.metadata.src_node_id != 100)
    assert {n for n in behaviour if exposure.exposed(n)} == {102, 103}
    # a message that got no answer (timed out): the partner may have computed, and may still answer
    exposure.record([request("query", "t", 105, {"phase": "stats"})], [])
    assert exposure.exposed(105) and not exposure.exposed(100)
    assert grid.get_node_ids() == list(inner.contexts)  # everything else is the wrapped grid's
    assert not exposure.everyone


def test_grid_calls_whose_replies_go_unseen_expose_everyone():
    exposure = Exposure(MANIFEST)

    class Raw:
        def push_messages(self, messages):  # noqa: ANN001, ANN202
            return []

    WatchedGrid(Raw(), exposure).push_messages([])
    assert exposure.everyone and exposure.exposed(12345)
