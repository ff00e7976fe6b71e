"""Handler timing (the overhead's denominator) and the wiring of ``--ray-address``, without starting Ray."""

from __future__ import annotations

import socket

import pytest
from flwr.app import Context, Message, MetricRecord, RecordDict

from fedinsight.core.errors import ConfigError
from fedinsight.federation import timing
from fedinsight.federation.simulation import check_ray_address, ray_init_args
from fedinsight.simulation.options import SimulationOptions
from fedinsight.simulation.run import simulation_timing


@pytest.fixture(autouse=True)
def _task_identity():
    """Flower stamps messages with the process's task identity (set by a run); these tests make theirs by hand."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def _message() -> Message:
    msg = Message(RecordDict({"m": MetricRecord({"x": 1.0})}), dst_node_id=7, message_type="train.propensity")
    msg.metadata.__dict__["_message_id"] = "m-1"  # as a received message has it (Flower sets it in transit)
    return msg


def _context() -> Context:
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def _handler(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"m": MetricRecord({"y": 2.0})}), reply_to=msg)  # what a task's handler returns


def test_handler_timer_records_each_message_only_in_a_simulation(tmp_path, monkeypatch):
    monkeypatch.delenv(timing.ENV, raising=False)
    msg = _message()
    reply = timing.handler_timer(msg, _context(), _handler)
    assert float(reply.content["m"]["y"]) == 2.0
    assert list(tmp_path.iterdir()) == []  # a deployed partner (no variable) writes nothing

    monkeypatch.setenv(timing.ENV, str(tmp_path))
    for _ in range(3):
        timing.handler_timer(msg, _context(), _handler)
    times = timing.collect(tmp_path)
    assert times["messages"] == 3 and times["workers"] == 1
    assert times["train.propensity"] > 0
    assert timing.handler_seconds(times) == pytest.approx(times["train.propensity"])
    line = next(tmp_path.iterdir()).read_text().splitlines()[0].split("\t")
    assert line[0] == "train.propensity" and line[3] == "m-1"


def test_handler_timer_times_a_failing_handler_and_reraises(tmp_path, monkeypatch):
    monkeypatch.setenv(timing.ENV, str(tmp_path))

    def broken(msg: Message, context: Context) -> Message:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        timing.handler_timer(_message(), _context(), broken)
    assert timing.collect(tmp_path)["messages"] == 1


def test_simulation_timing_overhead_is_wall_over_handler_time():
    out = simulation_timing({"local_train_s": 20.0}, 12.0, 15.0, {"train.x": 6.0, "evaluate.x": 2.0,
                                                                   "messages": 40.0, "workers": 2.0})
    assert out["partner_handler_s"] == 8.0 and out["federation_overhead"] == 1.5
    assert out["partner_messages"] == 40 and out["ray_workers"] == 2 and out["local_train_s"] == 20.0
    assert simulation_timing({}, 12.0, 15.0, {})["federation_overhead"] is None  # nothing recorded here


def test_ray_init_args_start_ray_here_or_join_a_cluster():
    here = ray_init_args(2, "", False)
    assert here["num_cpus"] == 2 and here["address"] == "local"  # never another job's Ray on this machine
    joined = ray_init_args(None, "10.0.0.5:6379", False)
    assert joined["address"] == "10.0.0.5:6379" and "num_cpus" not in joined  # Ray refuses both at once
    with pytest.raises(ConfigError, match="cannot be combined"):
        ray_init_args(2, "10.0.0.5:6379", False)


@pytest.mark.parametrize("address", ["localhost", "10.0.0.5:port", ":6379"])
def test_bad_ray_address_is_refused_with_what_to_give(address):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        SimulationOptions(ray_address=address)
    with pytest.raises(ConfigError, match="cannot be combined"):
        SimulationOptions(ray_address="127.0.0.1:6379", cpus=2)
    assert SimulationOptions(ray_address="127.0.0.1:6379").ray_address == "127.0.0.1:6379"


def test_unreachable_ray_cluster_is_a_config_error():
    with socket.socket() as sock:  # a port nobody listens on (bound, then released)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match="no Ray cluster answers"):
        check_ray_address(f"127.0.0.1:{port}", timeout=2.0)
    check_ray_address("")  # no address: Ray starts here, nothing to check


def test_simulation_grid_polls_faster_only_for_small_federations():
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    from fedinsight.federation.simulation import PULL_INTERVAL_S, tune_polling

    small, large = InMemoryGrid.__new__(InMemoryGrid), InMemoryGrid.__new__(InMemoryGrid)
    small.pull_interval = large.pull_interval = 0.1  # Flower's default (no link state needed for this)
    tune_polling(small, 10)
    tune_polling(large, 1_000)
    assert small.pull_interval == PULL_INTERVAL_S and large.pull_interval == 0.1
    other = type("DeployedGrid", (), {"pull_interval": 3.0})()
    tune_polling(other, 10)
    assert other.pull_interval == 3.0  # a deployment's grid is left alone


def test_a_simulated_round_waits_longer_for_more_partners():
    from fedinsight.simulation.run import simulation_timeout

    assert simulation_timeout(10) == 630.0
    assert simulation_timeout(1_000) == 3_600.0  # 1,000 hellos served by two workers, each opening every folder
