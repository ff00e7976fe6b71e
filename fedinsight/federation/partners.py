"""Waiting for the federation's partners before a job's first message.

Why: Flower may start a ServerApp before every SuperNode has connected, and Message-API strategies
then sample from too few nodes; every task therefore waits for the expected count first.
"""

from __future__ import annotations

import time

from flwr.serverapp import Grid

from fedinsight.core.errors import ConfigError, FedinsightError


def wait_for_partners(
    grid: Grid, expected: int, timeout: float, *, error: type[FedinsightError] = ConfigError, poll: float = 0.1
) -> list[int]:
    """Sorted node ids once at least ``expected`` partners are connected; ``error`` naming the shortfall
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise error(f"only {len(nodes)} of {expected} partners connected within {timeout:.0f}s")
        time.sleep(poll)
    return nodes
