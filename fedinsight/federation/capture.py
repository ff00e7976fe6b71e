"""Recording every Flower message a job exchanges, byte for byte (for leak audits).

Why on the coordinator's Grid: every message that leaves a partner arrives through the ServerApp's
Grid, and every message a partner receives was sent through it. Wrapping the Grid therefore sees the
complete Flower traffic of a job, in simulation and in deployment alike, without touching task code.
Messages are recorded in their wire form (Flower's protobuf serialisation), so an audit scans exactly
what would cross the network.

Enable it for any job by setting ``FEDINSIGHT_CAPTURE_DIR`` in the ServerApp's environment: the
ServerApp (``fedinsight.coordinator.serverapp``) then wraps its Grid and writes one ``.bin`` file per message.
The canary leak test (``benchmarks/canary.py``, ``tests/test_canary.py``) scans those files.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from flwr.app import Message, RecordDict
from flwr.common.serde import message_to_proto
from flwr.serverapp import Grid

CAPTURE_ENV = "FEDINSIGHT_CAPTURE_DIR"


def message_bytes(message: Message) -> bytes:
    """A message in Flower's wire format (protobuf), content and error included."""
    return message_to_proto(message).SerializeToString()


class PayloadRecorder:
    """Writes each captured message to ``folder/<seq>-<direction>-<message type>.bin``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, direction: str, message: Message) -> None:
        kind = message.metadata.message_type.replace("/", "_") or "message"
        with self._lock:
            seq = next(self._seq)
        (self.folder / f"{os.getpid()}-{seq:06d}-{direction}-{kind}.bin").write_bytes(message_bytes(message))


class CapturingGrid(Grid):
    """A Grid that hands every outgoing and incoming message to ``record(direction, message)``."""

    def __init__(self, grid: Grid, record: Callable[[str, Message], None]) -> None:
        self._grid = grid
        self._record = record

    @property
    def run(self):  # type: ignore[no-untyped-def]
        return self._grid.run

    def set_run(self, run) -> None:  # type: ignore[no-untyped-def]
        self._grid.set_run(run)

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self):  # type: ignore[no-untyped-def]
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        for m in messages:
            self._record("sent", m)
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self._grid.pull_messages(message_ids))
        for m in replies:
            self._record("received", m)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        for m in messages:
            self._record("sent", m)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for m in replies:
            self._record("received", m)
        return replies


def capture_if_requested(grid: Grid) -> Grid:
    """``grid`` wrapped to record every message when ``$FEDINSIGHT_CAPTURE_DIR`` is set, else ``grid``."""
    folder = os.environ.get(CAPTURE_ENV)
    return CapturingGrid(grid, PayloadRecorder(folder)) if folder else grid
