"""A user's own federation, as a new user would bring it, and a way to run any task on it in-process.

:func:`own_federation` writes partner folders with names nobody here chose (``華東 retail``, ``shop-us``,
``bank_eu``), planted direct identifiers with long, distinctive values (so that finding one in a run folder
cannot be chance), customers who refused consent and customers erased with ``partner forget``, and each
partner's ``protection.toml`` as ``partner init`` writes it (identifiers dropped). :func:`run_in_process`
runs a task's coordinator loop against the partners' real ClientApp without Ray, and keeps every message.
"""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
from flwr.app import Context, Error, Message, RecordDict

from fedinsight.data.synth import SynthConfig, generate_partner_frames

PARTNER_NAMES = ("華東 retail", "shop-us", "bank_eu")
OPTED_OUT_PER_PARTNER = 6
ERASED_PER_PARTNER = 5


@dataclass
class OwnFederation:
    root: Path
    identifiers: list[str]  # every planted identifier value (names, phones, e-mails, raw customer ids)
    opted_out: dict[str, list[str]]  # partner -> raw ids of customers who refused consent
    erased: dict[str, list[str]]  # partner -> raw ids of customers erased with `partner forget`
    catalogue: Path = field(default_factory=Path)

    @property
    def excluded(self) -> dict[str, list[str]]:
        return {p: [*self.opted_out[p], *self.erased[p]] for p in self.opted_out}

    def folder(self, partner: str) -> Path:
        return self.root / partner


def own_federation(root: Path, *, customers: int = 2400, seed: int = 5) -> OwnFederation:
    """Write the federation under ``root`` (see the module docstring)."""
    from fedinsight.partner.erasure import forget_customers
    from fedinsight.partner.policy import find_policy
    from fedinsight.partner.policy_init import init_partner

    frames, _truth = generate_partner_frames(SynthConfig(customers=customers, partners=len(PARTNER_NAMES), seed=seed))
    identifiers: list[str] = []
    opted_out: dict[str, list[str]] = {}
    erased: dict[str, list[str]] = {}
    items = None
    for (old, tables), name in zip(sorted(frames.items()), PARTNER_NAMES, strict=True):
        tables = {k: v.copy() for k, v in tables.items()}
        ids = tables["customers"]["customer_id"].astype(str)
        new_ids = {c: f"member-{name[:4].strip()}-{c}-7f3a9c" for c in ids}  # long raw ids: a hit is never chance
        for table in ("customers", "transactions", "interactions", "events"):
            tables[table]["customer_id"] = tables[table]["customer_id"].astype(str).map(new_ids)
        cust = tables["customers"]
        n = len(cust)
        cust["name"] = [f"Quibblewick Zelda {old}-{i:05d}" for i in range(n)]
        cust["phone"] = [f"+86 139 {4000 + i:04d} {7000 + (i * 7) % 3000:04d}" for i in range(n)]
        cust["email"] = [f"zelda.quibblewick.{old}.{i:05d}@planted.example" for i in range(n)]
        consenting = cust.index[cust["consent"].astype(str).str.lower() == "true"]
        refused = list(consenting[:OPTED_OUT_PER_PARTNER])
        cust.loc[refused, "consent"] = False
        opted_out[name] = cust.loc[refused, "customer_id"].tolist()
        heavy = tables["transactions"]["customer_id"].value_counts().index  # erase active customers
        erased[name] = [c for c in heavy if c not in opted_out[name]][:ERASED_PER_PARTNER]
        identifiers += [*cust["name"], *cust["phone"], *cust["email"], *cust["customer_id"]]
        folder = root / name
        folder.mkdir(parents=True)
        for table, frame in tables.items():
            frame.to_csv(folder / f"{table}.csv", index=False)
        init_partner(folder)
        forget_customers(erased[name], find_policy(folder), note="test")
        items = tables["items"]
    federation = OwnFederation(root, identifiers, opted_out, erased)
    federation.catalogue = root.parent / f"{root.name}-catalogue.parquet"
    assert items is not None
    items.to_parquet(federation.catalogue, index=False)
    return federation


class LocalGrid:
    """The partners' real ClientApp, called in this process (no Ray); keeps every message and reply.

    Messages are copied as a transport would serialise them (partners must not share records), and the
    legacy SecAgg+ workflow finds the ``run`` it reads of a Grid.
    """

    def __init__(self, partners: int, node_config: Any = None, app: Any = None) -> None:
        from flwr.common.constant import SUPERLINK_NODE_ID
        from flwr.supercore.task_identity import TaskIdentity

        from fedinsight.partner.clientapp import app as client_app

        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
        self.app = app or client_app
        self.contexts = {
            100 + k: Context(run_id=1, node_id=100 + k, node_config={"partition-id": k, "num-partitions": partners,
                                                                     **(node_config(k) if node_config else {})},
                             state=RecordDict(), run_config={})
            for k in range(partners)}
        self.sent: list[Message] = []
        self.replies: list[Message] = []
        self.run = SimpleNamespace(run_id=1)

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        out = []
        for msg in messages:
            msg = Message(copy.deepcopy(msg.content), dst_node_id=msg.metadata.dst_node_id,
                          message_type=msg.metadata.message_type, group_id=msg.metadata.group_id)
            self.sent.append(msg)
            try:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            except Exception as exc:  # what Flower does with a failing ClientApp
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            self.replies.append(reply)
            out.append(reply)
        return out


@dataclass
class LocalRun:
    summary: dict[str, Any]
    grid: LocalGrid
    session: Any


def task_options(task: str, federation: OwnFederation) -> dict[str, Any]:
    """Small, quick settings of each task for this federation (dashed run-config keys)."""
    return {
        "propensity": {"rounds": 2, "start": "2024-01-01", "cutoff": "2025-07-01", "end": "2026-01-01"},
        "insights": {"epsilon": 1.0, "as-of": "2026-01-01", "only": "segment-profile-rfm,ltv-tiers,ab-lift"},
        "recommend": {"rounds": 2, "epsilon": 8.0, "dim": 8, "local-epochs": 1, "popularity-share": 0.2,
                      "catalogue-path": str(federation.catalogue)},
        "secure_training": {"rounds": 2, "local-steps": 5, "sample-rate": 0.1, "cutoff": "2025-07-01"},
        "preflight": {"purpose": "training"},
        "segments": {"as-of": "2026-01-01", "k": 3, "iterations": 3},
        "baskets": {"epsilon": 2.0, "candidates": 8},
        "uplift": {"campaign": "campaign-1", "control": "A", "offer-costs": "B=2", "rounds": 2},
    }[task]


def run_in_process(task_name: str, federation: OwnFederation, out: Path, *, node_config: Any = None,
                   **extra: Any) -> LocalRun:
    """One job of ``task_name`` on ``federation``: the task contract's loop against the partners' ClientApp."""
    import fedinsight.federation.task as contract
    from fedinsight.federation import registry

    task = registry.get(task_name)
    captured: dict[str, Any] = {}
    original = contract.finish

    def finish(session: Any, result: Any) -> dict[str, Any]:
        captured["session"] = session
        return original(session, result)

    rc = {"task": task.name, "partners": len(PARTNER_NAMES), "data-root": str(federation.root),
          "ledger-url": f"sqlite:///{out / 'ledger.db'}", "partner-ledger-url": f"sqlite:///{out / 'partners.db'}",
          "budget": 20.0, "out-dir": str(out), "job-id": f"{task.name}-{uuid.uuid4().hex[:8]}", "timeout": 300.0,
          **task_options(task.name, federation), **extra}
    grid = LocalGrid(len(PARTNER_NAMES), node_config)
    contract.finish = finish
    try:
        context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=rc)
        contract.start(task, grid, context)  # type: ignore[arg-type]
    finally:
        contract.finish = original
    return LocalRun(contract.result_of(context), grid, captured.get("session"))


def python_settings(task: str, federation: OwnFederation) -> dict[str, Any]:
    """:func:`task_options` as the Python API spells them (``as_of`` for ``as-of``); the recommender trains its
    baselines briefly and skips the local-only ones (nothing checked here depends on them)."""
    settings = {k.replace("-", "_"): v for k, v in task_options(task, federation).items()}
    if task == "recommend":
        settings.update(baseline_epochs=2, local_only=False)
    return settings


class OwnSimulations:
    """Each task simulated once on Flower's runtime (two CPUs) through the Python API, on one own federation, the
    first time a test asks for it: ``fi.Federation.from_folder(root).simulate(task, out=..., **settings)``.

    Why shared: a simulation costs 20-40 s on two cores whatever its size (Ray's start, every worker importing the
    ClientApp), and several tests check different sides of the same run: tests/flows/every_task (the folders used
    in place, no identifier in any run folder) and tests/unit/simulation/test_python_api.py (the returned Run: its
    model scoring a partner's own customers, its insights table, its recommender).
    """

    def __init__(self, federation: OwnFederation, root: Path) -> None:
        self.federation, self.root, self.done = federation, root, {}

    def __getitem__(self, task: str) -> Any:
        import fedinsight as fi

        if task not in self.done:
            self.done[task] = fi.Federation.from_folder(self.federation.root).simulate(
                task, out=self.root / task, cpus=2, **python_settings(task, self.federation))
        return self.done[task]


def finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def raw_frames(federation: OwnFederation, partner: str) -> dict[str, pd.DataFrame]:
    folder = federation.folder(partner)
    return {f.stem: pd.read_csv(f, dtype=str) for f in folder.glob("*.csv")}
