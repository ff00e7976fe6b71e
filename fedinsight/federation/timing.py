"""How long simulated partners spend in their handlers: the denominator of the simulation overhead.

The overhead of a simulation is its wall time divided by the partners' own compute. The train replies carry
only whole seconds (a public, coarsened value: see the propensity manifest), far too coarse for that ratio, and
the partners run in Ray worker processes the driver cannot time. So, in a simulation only, the ClientApp's
:func:`handler_timer` mod appends each message's handler time (the whole ClientApp call: opening the partner's
view, the task's handler, building the reply) to a file of its worker process in the folder named by
``FEDINSIGHT_HANDLER_TIMES``, which :func:`collect` sums after the run. Each line: message type, seconds, start
(epoch) and message id, so a profile can match it to the driver's side (``benchmarks/sim_overhead.py``). The
values never leave this machine and never travel in a message; a deployed partner (no such variable) writes nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

ENV = "FEDINSIGHT_HANDLER_TIMES"


def handler_timer(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower mod: time ``call_next`` and, when ``FEDINSIGHT_HANDLER_TIMES`` names a folder, record it there."""
    folder = os.environ.get(ENV)
    if not folder:
        return call_next(msg, context)
    at, started = time.time(), time.perf_counter()
    try:
        return call_next(msg, context)
    finally:
        seconds = time.perf_counter() - started
        try:  # a worker on another machine of a Ray cluster has no such folder: its time is simply not counted
            with open(Path(folder) / f"handlers-{os.getpid()}.txt", "a", encoding="ascii") as fh:
                fh.write(f"{msg.metadata.message_type}\t{seconds:.6f}\t{at:.6f}\t{msg.metadata.message_id}\n")
        except OSError:
            pass


def collect(folder: str | Path) -> dict[str, float]:
    """Summed handler seconds per message type, ``"messages"`` (count) and ``"workers"`` (processes that served)."""
    out: dict[str, float] = {"messages": 0.0, "workers": 0.0}
    for path in sorted(Path(folder).glob("handlers-*.txt")):
        out["workers"] += 1
        for line in path.read_text(encoding="ascii").splitlines():
            kind, seconds = line.split("\t")[:2]  # then when it started and the message id (for profiles)
            out[kind] = out.get(kind, 0.0) + float(seconds)
            out["messages"] += 1
    return out


def handler_seconds(times: dict[str, float]) -> float:
    """The total of :func:`collect`'s per-type seconds."""
    return sum(v for k, v in times.items() if k not in ("messages", "workers"))
