"""Which partners may have released something private since the job charged them.

The coordinator charges every partner for the whole job before any of them computes
(:func:`~fedinsight.federation.budget.charge_before_compute`): that order is the privacy guarantee. But a job
can end with partners that released nothing private under it -- every partner refused (its own cap), a step
failed on every partner, the coordinator's own code failed before asking. Keeping their charge would make the
ledger, and the report's budget chart, show spending (or a partner) that never happened; so the budget path
withdraws it (:func:`~fedinsight.federation.budget.withdraw_unspent`), and only for partners this module can
vouch for.

After the charge, every message of the job goes through :class:`WatchedGrid` (every task, every workflow:
Flower's strategies and SecAgg+ workflows all call ``send_and_receive``). A partner counts as **exposed** as soon
as a message was sent to it and either

- it answered with a field the job's manifest declares as a DP release (a model update, noisy statistics, a
  masked SecAgg+ vector ...), whether or not the reply guard later kept it: the coordinator has seen it; or
- it did not answer at all: it may have computed, and a late answer may still arrive.

Only a partner whose every answer was an error or carried public values only (a refusal, its own accounting,
counts declared public) is not exposed. Grid calls other than ``send_and_receive`` expose everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Message

from fedinsight.federation.manifest import Manifest


class Exposure:
    """The nodes that may have released something private under the manifest's DP releases."""

    def __init__(self, manifest: Manifest) -> None:
        self.fields = {(r.record, key) for r in manifest.private() for key in r.fields}
        self.records = {r.record for r in manifest.private() if not r.fields}  # any content of these is private
        self.nodes: set[int] = set()
        self.everyone = False

    def released(self, reply: Message) -> bool:
        """Whether ``reply`` carries any value the manifest declares as a DP release."""
        if reply.has_error():
            return False
        for name, record in reply.content.items():
            if name in self.records and len(record):
                return True
            if any((name, key) in self.fields for key in record):
                return True
        return False

    def record(self, sent: Iterable[Message], replies: Iterable[Message]) -> None:
        """One exchange: who was asked and what came back (see the module docstring)."""
        asked = {m.metadata.dst_node_id for m in sent}
        answered: set[int] = set()
        for reply in replies:
            node = reply.metadata.src_node_id
            answered.add(node)
            if self.released(reply):
                self.nodes.add(node)
        self.nodes |= asked - answered

    def exposed(self, node: int) -> bool:
        return self.everyone or node in self.nodes


class WatchedGrid:
    """A Grid that tells an :class:`Exposure` about every exchange (everything else is the wrapped grid's)."""

    def __init__(self, grid: Any, exposure: Exposure) -> None:
        self._grid, self.exposure = grid, exposure

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._grid, name)
        if name in ("push_messages", "pull_messages"):  # replies we do not see: assume the worst
            self.exposure.everyone = True
        return value

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        sent = list(messages)
        replies = list(self._grid.send_and_receive(sent, timeout=timeout))
        self.exposure.record(sent, replies)
        return replies
