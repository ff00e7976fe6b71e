"""Start-up cost: the ClientApp registers every task without importing torch or Opacus, and every message still
reaches the task's real handler.

Why it matters: every Ray worker of every simulation imports the ClientApp; torch and Opacus cost it ~4 s, and an
insights, segments, baskets or preflight job never needs them.
"""

from __future__ import annotations

import importlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import fedinsight
from fedinsight.federation import registry
from fedinsight.federation.lazy import Lazy
from fedinsight.tasks import TASKS

HEAVY = ("torch", "opacus")
ROOT = Path(fedinsight.__file__).resolve().parent.parent

# Run in a fresh interpreter: the test process itself has long imported torch through other tests.
_PROBE = """
import json, sys
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

import fedinsight.partner.clientapp as clientapp
from fedinsight.federation import registry

heavy = ("torch", "opacus")
out = {"after_import": [m for m in heavy if m in sys.modules],
       "routes": sorted(clientapp.app._registered_funcs), "tasks": registry.names()}
TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
replies = {}
for name in ("insights", "segments", "baskets", "preflight"):  # jobs that need no torch: hello on them loads none
    msg = Message(RecordDict({"config": ConfigRecord({"phase": "hello", "task": name})}), dst_node_id=1,
                  message_type=f"query.{name}")
    node = {"data-path": sys.argv[1]}  # a deployed partner's own folder: hello reads it through the task's code
    reply = clientapp.app(msg, Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config={}))
    replies[name] = reply.error.reason if reply.has_error() else "ok"
out["replies"] = replies
out["after_hello"] = [m for m in heavy if m in sys.modules]
print(json.dumps(out))
"""


def test_importing_the_client_app_loads_no_torch_and_routes_every_task(tmp_path):
    from support.engine_data import own_tables, write_csv_partner

    from fedinsight.partner.policy_init import init_partner

    folder = write_csv_partner(tmp_path / "shop", own_tables(customers=60))
    init_partner(folder)
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(folder)], capture_output=True, text=True, check=False,
                          cwd=ROOT, env={**_env(), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["after_import"] == [], f"importing the ClientApp imported {out['after_import']} again"
    assert len(out["tasks"]) == 8
    kinds = {route.split(".", 1)[1] for route in out["routes"]}
    assert kinds == {*out["tasks"], "default"}  # every task still has its routes (+ the shared SecAgg+ path)
    for task in registry.tasks():  # the same message types as each task declares
        assert {f"{kind}.{task.name}" for kind in {"query", *task.handlers()}} <= set(out["routes"])
    # jobs that need no torch answer hello from the partner's data without it: insights and preflight with their
    # facts; segments and baskets refuse in their own words (this hello lacks --as-of; the shop has no category)
    replies = out["replies"]
    assert replies["insights"] == replies["preflight"] == "ok", replies
    assert "--as-of" in replies["segments"] and "category" in replies["baskets"], replies
    assert out["after_hello"] == []


@pytest.mark.parametrize("task", TASKS, ids=[t.name for t in TASKS])
def test_every_lazy_handler_names_a_real_function(task):
    """A lazy reference is a module and attribute as strings: a typo or a rename would only surface at a job's
    first message, so each one is resolved here, to the function its module defines."""
    refs = dict(task.handlers())
    if (fit := task.secure_fit()) is not None:
        refs["secure_fit"] = fit
    for kind, ref in refs.items():
        if isinstance(ref, Lazy):
            target = ref.resolve()
            assert callable(target) and not isinstance(target, Lazy), (task.name, kind)
            assert target is getattr(importlib.import_module(ref.module), ref.attribute)
            assert pickle.loads(pickle.dumps(ref)).resolve() is target  # Ray may ship it to a worker
        else:
            assert callable(ref), (task.name, kind)


def test_a_lazy_reference_calls_through_and_sees_the_module_as_it_is(monkeypatch):
    import fedinsight.tasks.preflight as preflight

    ref = Lazy("fedinsight.tasks.preflight", "check")
    assert ref.resolve() is preflight.check
    monkeypatch.setattr(preflight, "check", lambda msg, partner: ("called", msg, partner))
    assert ref("m", "p") == ("called", "m", "p")
    with pytest.raises(ModuleNotFoundError):
        Lazy("fedinsight.tasks.no_such_task", "query").resolve()


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
