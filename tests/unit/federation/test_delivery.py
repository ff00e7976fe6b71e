"""Indexed delivery: Flower's link state is asked only for nodes that may have a message, and nothing is lost."""

from __future__ import annotations

from types import SimpleNamespace

from flwr.server.superlink.linkstate import InMemoryLinkState

from fedinsight.federation.delivery import indexed_delivery


class _Store:
    """Flower's two methods, recorded: messages per node, every ask."""

    def __init__(self) -> None:
        self.queues: dict[int, list[str]] = {}
        self.asks: list[int] = []

    def store(self, state, message):
        node = message.metadata.dst_node_id
        self.queues.setdefault(node, []).append(message.metadata.message_id)
        return message.metadata.message_id

    def get(self, state, node_id, limit, *, run_id=None):
        self.asks.append(node_id)
        queue = self.queues.get(node_id, [])
        out, self.queues[node_id] = queue[:limit], queue[limit:]
        return out


def _msg(node: int, mid: str):
    return SimpleNamespace(metadata=SimpleNamespace(dst_node_id=node, message_id=mid))


def test_only_nodes_with_stored_messages_are_asked_and_every_message_arrives(monkeypatch):
    fake = _Store()
    monkeypatch.setattr(InMemoryLinkState, "store_message_ins", fake.store)
    monkeypatch.setattr(InMemoryLinkState, "get_message_ins", fake.get)
    state = object.__new__(InMemoryLinkState)
    with indexed_delivery():
        for node in range(1_000):  # a sweep over 1,000 nodes with nothing stored: Flower is never asked
            assert state.get_message_ins(node, 1) == []
        assert fake.asks == []
        state.store_message_ins(_msg(7, "a"))
        state.store_message_ins(_msg(7, "b"))
        delivered = [m for _ in range(3) for node in (3, 7) for m in state.get_message_ins(node, 1)]
        assert delivered == ["a", "b"]  # one per ask, in order, none lost
        assert fake.asks == [7, 7, 7]  # node 3 never asked; node 7 until an ask found nothing
        state.store_message_ins(_msg(7, "c"))  # stored after the empty ask: delivered on the next one
        assert state.get_message_ins(7, 1) == ["c"]
        assert state.get_message_ins(3, 1, run_id=5) == []  # a filtered ask always goes to Flower
        assert fake.asks[-1] == 3
    assert InMemoryLinkState.get_message_ins == fake.get  # Flower's own methods are back after the block
