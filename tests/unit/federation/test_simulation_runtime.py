"""The simulation runner: Flower's runtime with Ray, run config delivered, Ray stopped afterwards."""

from __future__ import annotations

import time

import pytest
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedinsight.core.errors import ConfigError
from fedinsight.federation import registry
from fedinsight.federation.simulation import run_simulation


def _apps() -> tuple[ServerApp, ClientApp]:
    client = ClientApp()

    @client.query("echo")
    def echo(msg: Message, context: Context) -> Message:
        factor = float(msg.content["config"]["factor"])
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"m": MetricRecord({"value": factor * (pid + 1)})}), reply_to=msg)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        deadline = time.monotonic() + 300  # generous: on a loaded machine Ray can be slow to bring nodes up
        while len(list(grid.get_node_ids())) < int(context.run_config["partners"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        config = ConfigRecord({"factor": float(context.run_config["factor"])})
        msgs = [Message(RecordDict({"config": config}), dst_node_id=n, message_type="query.echo")
                for n in grid.get_node_ids()]
        values = sorted(float(r.content["m"]["value"]) for r in grid.send_and_receive(msgs))
        context.state["result"] = ConfigRecord({"values": values})

    return server, client


@pytest.mark.slow
def test_run_simulation_round_trip_and_ray_is_stopped():
    import ray

    server, client = _apps()
    context = run_simulation({"partners": 3, "factor": 2.5}, 3, server_app=server, client_app=client)
    assert list(context.state["result"]["values"]) == [2.5, 5.0, 7.5]
    assert not ray.is_initialized()


def test_bad_config_is_refused_before_ray_starts():
    server, client = _apps()
    with pytest.raises(ConfigError, match="between 1 and"):
        run_simulation({}, 0, server_app=server, client_app=client)
    with pytest.raises(ConfigError, match="must be a str"):
        run_simulation({"x": [1, 2]}, 2, server_app=server, client_app=client)
    with pytest.raises(ConfigError, match="unknown task 'teleport'"):
        registry.get("teleport")
