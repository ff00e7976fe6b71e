"""``--ray-address``: a simulation runs on an existing Ray cluster (``ray start --head``), which outlives it.

The cluster is started here with ``ray start --head --block`` and stopped by that process's PID (SIGTERM: it stops
every Ray process it started). Slow: a Ray cluster starts in ~10 s, and its workers import the ClientApp.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedinsight.core.errors import ConfigError
from fedinsight.core.procs import free_port
from fedinsight.federation.partners import wait_for_partners
from fedinsight.federation.simulation import run_simulation

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RAY = Path(sys.executable).with_name("ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-CPU Ray head on a free port: its address, then stopped by PID."""
    port = free_port()
    # every port the head opens is a free one (Ray's defaults are fixed numbers, which another Ray on the machine
    # may hold); workers get a range above a free port
    ports = [f"--{name}={free_port()}" for name in (
        "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "node-manager-port", "object-manager-port", "runtime-env-agent-port")]
    low = free_port()
    log = tmp_path_factory.mktemp("ray") / "ray-start.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(RAY), "start", "--head", "--block", "--port", str(port), "--num-cpus", "1",
                                 "--include-dashboard=false", "--disable-usage-stats", *ports,
                                 f"--min-worker-port={low}", f"--max-worker-port={min(low + 100, 65535)}"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:  # the GCS answers on the port once the head is up
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not come up in 120 s"
                time.sleep(0.5)
        time.sleep(2)  # the raylet registers its CPUs just after the GCS opens its port
        yield f"127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _apps() -> tuple[ServerApp, ClientApp]:
    """Partners that answer ``factor x (partition + 1)``; the coordinator keeps the sorted answers."""
    client = ClientApp()

    @client.query("echo")
    def echo(msg: Message, context: Context) -> Message:
        value = float(msg.content["config"]["factor"]) * (int(context.node_config["partition-id"]) + 1)
        return Message(RecordDict({"m": MetricRecord({"value": value})}), reply_to=msg)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = wait_for_partners(grid, int(context.run_config["partners"]), 300)
        config = ConfigRecord({"factor": float(context.run_config["factor"])})
        msgs = [Message(RecordDict({"config": config}), dst_node_id=n, message_type="query.echo") for n in nodes]
        values = sorted(float(r.content["m"]["value"]) for r in grid.send_and_receive(msgs))
        context.state["result"] = ConfigRecord({"values": values})

    return server, client


def test_a_job_runs_on_the_cluster_and_the_cluster_keeps_running(cluster):
    import ray

    address, proc = cluster
    server, client = _apps()
    context = run_simulation({"partners": 3, "factor": 2.0}, 3, server_app=server, client_app=client,
                             ray_address=address)
    assert list(context.state["result"]["values"]) == [2.0, 4.0, 6.0]
    assert not ray.is_initialized()  # this process let go of the cluster...
    assert proc.poll() is None  # ...which is still running for the next job
    context = run_simulation({"partners": 2, "factor": 1.0}, 2, server_app=server, client_app=client,
                             ray_address=address)
    assert list(context.state["result"]["values"]) == [1.0, 2.0]


def test_preflight_through_the_python_api_on_the_cluster(cluster, tmp_path):
    from support.federations import own_federation

    import fedinsight as fi

    address, _ = cluster
    fed = own_federation(tmp_path / "partners", customers=300)
    run = fi.Federation.from_folder(fed.root).simulate("preflight", out=tmp_path / "run", ray_address=address)
    assert run.summary["partners"] == 3 and run.summary["task"] == "preflight"
    assert run.summary["timing"]["simulation_s"] > 0
    with pytest.raises(ConfigError, match="cannot be combined"):
        fi.Federation.from_folder(fed.root).simulate("preflight", out=tmp_path / "run2", ray_address=address, cpus=1)
    assert not (tmp_path / "run2").exists()  # refused before anything was written
