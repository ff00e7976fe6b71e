"""One registry: the ClientApp, the ServerApp, consent purposes, the report, the CLI and the job API each see
exactly the registered tasks, and an unknown task or purpose is an error, never a default."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedinsight.core.errors import ConfigError
from fedinsight.federation import registry
from fedinsight.federation.options import Options
from fedinsight.federation.task import Task
from fedinsight.privacy.consent import PURPOSES
from fedinsight.tasks import TASKS


def test_the_registry_holds_every_shipped_task_once():
    assert registry.names() == sorted(t.name for t in TASKS)
    assert len(set(registry.names())) == len(TASKS) == 8
    for task in registry.tasks():
        assert isinstance(task, Task) and task.name.isidentifier()  # Flower message types need identifiers
        assert issubclass(task.options, Options)
        assert task.purpose in PURPOSES
        assert registry.get(task.name) is task
    assert registry.get("secagg") is registry.get("secure_training")  # an old name still resolves


def test_an_unknown_task_or_purpose_is_an_error():
    with pytest.raises(ConfigError, match="unknown task 'teleport'.*known tasks: baskets, insights"):
        registry.get("teleport")
    from fedinsight.partner.view import PartnerView
    from fedinsight.privacy.consent import resolve_purpose

    with pytest.raises(ConfigError, match="unknown purpose"):
        resolve_purpose("astrology")
    with pytest.raises(ConfigError, match="unknown purpose"):
        PartnerView(".", "everything")


def test_consent_purposes_come_from_the_registry():
    assert registry.purposes() == {t.name: t.purpose for t in TASKS}


def test_the_client_app_serves_exactly_the_registered_tasks(set_identity):
    from fedinsight.partner.clientapp import app

    actions = {key.split(".", 1)[1] for key in _handler_keys(app)}
    assert actions == {*registry.names(), "default"}  # "default": the one legacy SecAgg+ train path, shared
    for task in registry.tasks():  # every task answers the shared hello
        msg = Message(RecordDict({"config": ConfigRecord({"phase": "hello", "task": task.name})}), dst_node_id=1,
                      message_type=f"query.{task.name}")
        reply = app(msg, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}))
        assert reply.has_error() and "partner has no data" in reply.error.reason  # no data here: a typed refusal


def _handler_keys(app) -> set[str]:  # noqa: ANN001
    """The ClientApp's registered message types (Flower keeps them in ``_registered_funcs``)."""
    return set(app._registered_funcs)


def test_the_server_app_dispatches_through_the_registry(monkeypatch, tmp_path):
    import fedinsight.coordinator.serverapp as serverapp
    from fedinsight.coordinator.identities import write_partner_nodes
    from fedinsight.coordinator.state import ENV_STATE_DIR

    seen, bound = [], []
    monkeypatch.delenv(ENV_STATE_DIR, raising=False)
    monkeypatch.setattr(serverapp, "start", lambda task, grid, context, identities: (seen.append(task),
                                                                                     bound.append(identities)))
    monkeypatch.setattr(serverapp, "capture_if_requested", lambda grid: grid)
    for name in registry.names():
        serverapp.main(object(), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                         run_config={"task": name}))
    assert [t.name for t in seen] == registry.names()
    assert set(map(str, bound)) == {"None"}  # no coordinator state: nothing to bind (a simulation)
    # on a coordinator, each job's loop gets the recorded partner id -> node id bindings
    write_partner_nodes(tmp_path, {"retail": 11})
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path))
    serverapp.main(object(), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                     run_config={"task": "preflight"}))
    assert bound[-1] == {"retail": 11}
    with pytest.raises(ConfigError, match="unknown task"):
        serverapp.main(object(), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                         run_config={"task": "teleport"}))


def test_the_cli_has_one_simulate_command_per_task():
    from typer.main import get_command

    from fedinsight.cli.simulate import command_name, simulate_app

    group = get_command(simulate_app)
    listed = {name for name, cmd in group.commands.items() if not cmd.hidden}
    assert listed == {command_name(t) for t in registry.tasks()}
    for task in registry.tasks():  # each command's flags are its options' (and the simulation's)
        flags = {opt for p in group.commands[command_name(task)].params for opt in p.opts}
        assert {f"--{f.flag}" for f in task.options.cli_fields()} <= flags


def test_the_job_api_and_the_report_know_exactly_the_registered_tasks(tmp_path):
    import json

    from fedinsight.coordinator.jobs import available_tasks
    from fedinsight.core.errors import ReportError
    from fedinsight.tasks.runs import task_of_run

    assert available_tasks() == registry.names()
    for name in registry.names():
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"task": name}))
        assert task_of_run(tmp_path / name).name == name
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "summary.json").write_text(json.dumps({"task": "teleport"}))
    with pytest.raises(ConfigError, match="unknown task"):
        task_of_run(tmp_path / "odd")
    with pytest.raises(ReportError, match="no summary.json"):
        task_of_run(tmp_path)


@pytest.fixture
def set_identity():
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
