"""The partner's Flower ClientApp (``[tool.flwr.app.components] clientapp``), built from the task registry.

Runs on the partner's premises. Every registered task gets its message kinds (``query.<task>``,
``train.<task>``, ``evaluate.<task>``); each message is handed to the task's handler with a
:class:`~fedinsight.partner.side.PartnerSide` -- the partner's data view, budget gate, vault and own
settings -- so no handler opens a file, reads a node config or spends budget any other way. The ``hello``
phase of every task is answered here (the partner's id and the task's public facts). A handler's failure
becomes one error reply (:func:`~fedinsight.federation.messages.error_reply`): a user error's message, or
a bug's type only. SecAgg+ rounds arrive on Flower's legacy path as plain ``train`` messages and go to
the secure fit of the task their config names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedinsight.core.errors import ConfigError
from fedinsight.federation import registry
from fedinsight.federation.budget import default_job_delta
from fedinsight.federation.messages import config_of, error_reply
from fedinsight.federation.secagg import SECAGG_MODS, legacy_train_handler
from fedinsight.federation.task import Handler, Task, partner_reply, phase_of
from fedinsight.federation.timing import handler_timer
from fedinsight.partner.side import PartnerSide
from fedinsight.tasks import TASKS


def partner_for(task: Task, context: Context, config: dict[str, Any]) -> PartnerSide:
    return PartnerSide(task.purpose_for(config), context, config)


def _hello(task: Task, msg: Message, partner: PartnerSide) -> Message:
    config = config_of(msg)
    options = task.options.from_run_config(config)
    partner.check_data()
    ceiling = None
    if (delta := task.stated_delta(options)) is not None:  # before the coordinator charges anyone
        partner.gate.check_delta(delta)
    elif task.is_private(options) and hasattr(options, "delta"):  # the job takes its delta from the partners'
        ceiling = partner.gate.delta_ceiling()
        # the task's own hello checks (would its budget refuse?) at the largest delta the job can get: the noise
        # only grows at a smaller one, so a check that passes here passes then
        config = {**config, "delta": default_job_delta([] if ceiling is None else [ceiling])}
    facts = task.hello_facts(partner, config)
    release = task.hello_facts_release(options) if facts else None
    return partner_reply(msg, partner.partner_id, facts, release.kind if release is not None else "metrics",
                         delta_ceiling=ceiling)


def _wrap(task: Task, kind: str, handler: Handler | None) -> Any:
    def handle(msg: Message, context: Context) -> Message:
        try:
            partner = partner_for(task, context, config_of(msg))
            if kind == "query" and phase_of(msg) == "hello":
                return _hello(task, msg, partner)
            if handler is None:
                raise ConfigError(f"task {task.name} has no '{kind}' step '{phase_of(msg)}'")
            return handler(msg, partner)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one reply (see error_reply)
            return error_reply(msg, exc)

    handle.__name__ = f"{kind}_{task.name}"
    return handle


def build_client_app(tasks: Sequence[Task] | None = None, *, inner_mods: Sequence[Any] = ()) -> ClientApp:
    """A ClientApp serving ``tasks`` (default: every registered task). ``inner_mods`` run after SecAgg+'s mods
    on the legacy train path (tests record the plaintext update there). Every message is timed by
    :func:`~fedinsight.federation.timing.handler_timer` (recorded only in a simulation)."""
    tasks = list(tasks) if tasks is not None else registry.tasks()
    app = ClientApp(mods=[handler_timer])
    for task in tasks:
        handlers = dict(task.handlers())
        handlers.setdefault("query", None)  # type: ignore[arg-type]  # every task answers hello
        for kind, handler in handlers.items():
            getattr(app, kind)(task.name)(_wrap(task, kind, handler))
    fits = {t.name: fit for t in tasks if (fit := t.secure_fit()) is not None}
    if fits:
        by_name = {t.name: t for t in tasks}
        app.train(mods=[*SECAGG_MODS, *inner_mods])(legacy_train_handler(
            fits, default=next(iter(fits)), partner_for=lambda name, ctx, cfg: partner_for(by_name[name], ctx, cfg)))
    return app


assert TASKS  # importing fedinsight.tasks registered every task
app = build_client_app()
