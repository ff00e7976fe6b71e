"""Run a fedinsight job on Flower's simulation runtime (Ray virtual SuperNodes) in this process.

Why not ``flwr run .``: that path starts a detached SuperLink and SuperExec that outlive the command
(~290 MB) and gives us no handle on the result. Flower's own ``flwr-simulation`` process drives the
runtime through ``_run_simulation`` with a ``Run`` carrying the run config; we do the same here, so the
ServerApp receives ``context.run_config`` exactly as under ``flwr run`` and the same ServerApp code
serves simulation and deployment. Ray is started for the run and shut down when it ends, or an existing Ray
cluster is joined (``ray_address``) and left running. While the run lasts, Flower's link state is asked only
for nodes that may have a message (:mod:`~fedinsight.federation.delivery`) and every partner's handler time is
recorded (:mod:`~fedinsight.federation.timing`).

Virtual partners get ``node_config['partition-id']``; the run config reaches the ClientApps inside
the messages the ServerApp sends (Flower does not give simulated nodes the run config).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedinsight.core.errors import ConfigError
from fedinsight.federation import timing
from fedinsight.federation.delivery import indexed_delivery

MAX_PARTNERS = 1_000
PULL_INTERVAL_S = 0.02
"""How often the simulation's in-memory grid looks for replies (Flower's default: 0.1 s). A 10-partner, 20-round
job waits for replies about 60 times; at 0.1 s each wait ends on average 50 ms after the last reply came."""


@contextmanager
def flower_logs(verbose: bool) -> Iterator[None]:
    """Flower's DEBUG/INFO lines (every node, every round) only with ``verbose``; its warnings and errors always.

    Flower's logger keeps its own console handler, and ``verbose_logging`` lowers that handler to DEBUG for good;
    Opacus installs a root handler at import, which would print every Flower line a second time. So for the
    run Flower's records stop at its own handler, and its level, its handler's level and its propagation are
    restored afterwards (a notebook's next run is as quiet as its first).
    """
    from flwr.common.logger import FLOWER_LOGGER  # the "flwr" logger

    handlers = list(FLOWER_LOGGER.handlers)
    saved = (FLOWER_LOGGER.level, FLOWER_LOGGER.propagate, [h.level for h in handlers])
    FLOWER_LOGGER.propagate = False
    if not verbose:
        FLOWER_LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        FLOWER_LOGGER.setLevel(saved[0])
        FLOWER_LOGGER.propagate = saved[1]
        for handler, level in zip(handlers, saved[2], strict=True):
            handler.setLevel(level)


def run_simulation(
    run_config: dict[str, Any],
    num_partners: int,
    *,
    server_app: ServerApp,
    client_app: ClientApp,
    cpus: int | None = None,
    cpus_per_partner: float = 1.0,
    ray_address: str = "",
    verbose: bool = False,
    handler_times: dict[str, float] | None = None,
) -> Context:
    """Run ``server_app`` against ``num_partners`` virtual partners; return the ServerApp's final context.

    fedinsight's own apps are ``fedinsight.coordinator.serverapp:app`` and ``fedinsight.partner.clientapp:app``
    (:func:`fedinsight.simulation.run.simulate` passes them).
    ``run_config`` values must be Flower config scalars (str, int, float, bool). Flower's and Ray's DEBUG/INFO
    lines are shown only with ``verbose`` (:func:`flower_logs`).

    ``ray_address``: run on an existing Ray cluster (``ray start --head`` prints it, e.g. ``192.168.1.5:6379``)
    instead of starting Ray in this process; its CPUs then decide how many partners compute at once, and the
    cluster keeps running afterwards. ``handler_times``, if given, is filled with the partners' summed handler
    seconds per message type (:mod:`fedinsight.federation.timing`; workers on other machines are not counted).
    """
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supercore.telemetry import EventType

    if not 1 <= num_partners <= MAX_PARTNERS:
        raise ConfigError(f"--partners must be between 1 and {MAX_PARTNERS} (got {num_partners})")
    for key, value in run_config.items():
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"run config value {key}={value!r} must be a str, int, float or bool")

    run_id = int.from_bytes(os.urandom(7), "big")
    run = Run.create_empty(run_id=run_id)
    run.override_config = dict(run_config)
    run.primary_task_id = int.from_bytes(os.urandom(7), "big")
    run.federation_id = NOOP_FEDERATION_ID
    # Flower's legacy API sets the same process-wide task identity before simulating.
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    context = Context(run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config))
    backend_config = {
        "client_resources": {"num_cpus": cpus_per_partner, "num_gpus": 0.0},
        "init_args": ray_init_args(cpus, ray_address, verbose),
    }
    with flower_logs(verbose), indexed_delivery(), _times_folder() as times, _environ(timing.ENV, times):
        result = _run_simulation(
            num_supernodes=num_partners,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=client_app,
            server_app=server_app,
            backend_config=backend_config,  # type: ignore[arg-type]
            run=run,
            server_app_context=context,
            verbose_logging=verbose,
        )
        if handler_times is not None:
            handler_times.update(timing.collect(times))
    return result.context


def tune_polling(grid: Any, partners: int) -> None:
    """Poll for replies every :data:`PULL_INTERVAL_S` on Flower's in-memory grid (a simulation's) of up to 100
    partners. Larger federations keep Flower's 0.1 s: each poll asks the link state about every outstanding
    message, which at 1,000 partners would take CPU from the partners. A deployed job's grid is left alone."""
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    if isinstance(grid, InMemoryGrid) and partners <= 100:
        grid.pull_interval = PULL_INTERVAL_S


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """A ConfigError unless the Ray cluster's head answers at ``address`` (checked before anything is written or
    charged: Flower's runtime would otherwise log the failure in a thread and leave the job waiting)."""
    import socket

    if not address or address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({type(exc).__name__}); start one "
                          "with `ray start --head --port PORT` or check the address") from None


def ray_init_args(cpus: int | None, ray_address: str, verbose: bool) -> dict[str, Any]:
    """``ray.init`` arguments: a Ray of ``cpus`` CPUs (default: all) started here, or the cluster at ``ray_address``
    (Ray refuses a CPU count when it joins a cluster: the cluster's own resources decide)."""
    args: dict[str, Any] = {"logging_level": "error", "log_to_driver": verbose}
    if ray_address:
        if cpus is not None:
            raise ConfigError("--cpus and --ray-address cannot be combined: a Ray cluster's own CPUs decide how many "
                              "partners compute at once (start its nodes with `ray start --num-cpus N`)")
        return {**args, "address": ray_address}
    # "local": always a Ray of our own. Without an address ray.init joins any Ray already running on this machine
    # (it finds one through /tmp/ray/ray_current_cluster), e.g. another user's simulation, and then refuses num_cpus.
    return {**args, "address": "local", "num_cpus": cpus or max(1, os.cpu_count() or 1)}


@contextmanager
def _times_folder() -> Iterator[str]:
    """Where workers record handler times: a temporary folder, or the caller's ``FEDINSIGHT_HANDLER_TIMES`` (a
    profile keeps the lines; ``benchmarks/sim_overhead.py``)."""
    given = os.environ.get(timing.ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="fedinsight-times-") as folder:
        yield folder


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the block (Ray's local workers inherit the driver's environment)."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
