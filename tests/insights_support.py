"""Test support for insights: a stand-in Flower grid that delivers messages to the real partner handler.

It lets tests drive the coordinator's ``run(grid, context)`` in-process (no Ray), and record which
operations reached partners -- e.g. that a refused batch never sent ``compute``.
"""

from __future__ import annotations

from flwr.app import Context, Error, Message, RecordDict


class FakeGrid:
    """Delivers messages to the real partner handler in-process (no Ray), and records what was sent."""

    def __init__(self, roots: dict[int, str], limit: float | None = None) -> None:
        from flwr.common.constant import SUPERLINK_NODE_ID
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 99, SUPERLINK_NODE_ID
        self.roots, self.limit, self.sent = roots, limit, []

    def get_node_ids(self):
        return list(self.roots)

    def send_and_receive(self, messages, timeout=None):
        from fedinsight.tasks.insights.client import query_insights

        out = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            self.sent.append(msg.content["config"]["op"])
            config = {"data-path": self.roots[node], "partner-id": f"partner-{node}"}
            if self.limit is not None:
                config["insights-max-epsilon"] = self.limit
            ctx = Context(run_id=99, node_id=node, node_config=config, state=RecordDict(), run_config={})
            try:
                reply = query_insights(msg, ctx)
            except Exception as exc:  # what Flower does with a failing ClientApp
                reply = Message(Error(code=0, reason=str(exc)), reply_to=msg)
            out.append(reply)
        return out
