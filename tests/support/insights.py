"""Test support for insights: a stand-in Flower grid that delivers messages to the real partner ClientApp.

It lets tests drive the coordinator's side of a task in-process (no Ray) through the task contract's one
loop, and record which phases reached partners -- e.g. that a refused batch never sent ``compute``.
Partners are deployed-style: each has its own ``data-path`` and ``partner-id`` (and, if given, its own cap).
"""

from __future__ import annotations

from flwr.app import Context, Error, Message, RecordDict


class FakeGrid:
    """Delivers messages to the partners' ClientApp in-process (no Ray), and records the phases sent."""

    def __init__(self, roots: dict[int, str], limit: float | None = None) -> None:
        from flwr.common.constant import SUPERLINK_NODE_ID
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 99, SUPERLINK_NODE_ID
        self.roots, self.limit, self.sent = roots, limit, []
        self.contexts: dict[int, Context] = {}

    def get_node_ids(self):
        return list(self.roots)

    def send_and_receive(self, messages, timeout=None):
        from fedinsight.partner.clientapp import app

        out = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            self.sent.append(msg.content["config"]["phase"])
            config = {"data-path": self.roots[node], "partner-id": f"partner-{node}"}
            if self.limit is not None:
                config["epsilon"] = self.limit  # the partner's own lifetime cap
            ctx = self.contexts.setdefault(node, Context(run_id=99, node_id=node, node_config=config,
                                                         state=RecordDict(), run_config={}))
            try:
                reply = app(msg, ctx)
            except Exception as exc:  # what Flower does with a failing ClientApp
                reply = Message(Error(code=0, reason=str(exc)), reply_to=msg)
            out.append(reply)
        return out


def run_task(grid, run_config: dict) -> Context:
    """Run the task the run config names through the task contract's loop; the ServerApp's context."""
    from fedinsight.federation import registry
    from fedinsight.federation.task import start

    ctx = Context(run_id=99, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config))
    start(registry.get(str(run_config["task"])), grid, ctx)
    return ctx
