"""An in-process stand-in for Flower's Grid: messages go straight to a ClientApp, one Context per partner.

Why: the ServerApp logic (phases, ledger, strategy, reply inspection) can then be tested in seconds and
every message in both directions can be inspected. The real runtime (Ray) is covered by the slow
end-to-end test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

RUN_ID = 4242


def set_task_identity() -> None:
    """Messages need a run/task identity, as inside Flower's runtime."""
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = RUN_ID
    TaskIdentity.node_id = 1  # the SuperLink's node id


class InProcessGrid:
    """``get_node_ids`` and ``send_and_receive`` over an in-process ClientApp."""

    def __init__(self, client_app: ClientApp | Callable[[Message, Context], Message], partners: int,
                 node_config: Callable[[int], dict[str, object]] | None = None) -> None:
        set_task_identity()
        self.app = client_app
        self.contexts = {
            100 + k: Context(run_id=RUN_ID, node_id=100 + k,
                             node_config={"partition-id": k, "num-partitions": partners,
                                          **(node_config(k) if node_config else {})},
                             state=RecordDict(), run_config={})
            for k in range(partners)
        }
        self.sent: list[Message] = []
        self.replies: list[Message] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        out = []
        for msg in messages:
            self.sent.append(msg)
            try:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            except Exception as exc:  # the real runtime turns handler exceptions into error replies
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            self.replies.append(reply)
            out.append(reply)
        return out
