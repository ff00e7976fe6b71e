"""The privacy ledger: one persistent record per partner of every privacy-consuming release.

Why it exists: a partner's customers are protected by *one* budget (epsilon, delta) that every release
spends from — each DP-SGD training run and each insight query — so the guarantee is about everything
the coordinator ever learned, not about one job. The ledger stores each charge as the mechanism that
was run (a Google ``dp_accounting`` ``DpEvent``: Gaussian, Laplace, Poisson-subsampled DP-SGD steps,
zCDP...), and composes *all* of a partner's events with a real accountant (RDP by default, PLD as an
option) to get the cumulative epsilon at the budget's delta. A charge that would exceed the budget is
refused before anything runs, atomically: two concurrent charges cannot both pass the check.

Budgets never reset silently: charges are append-only, and changing a budget is an explicit,
recorded act (``set_budget(..., reason=...)``). The one exception is :meth:`PrivacyLedger.withdraw`: a job's
own failure path takes back the charge of partners that released nothing private under that job (decided
by the budget path, which watched every reply), so a refused or failed job leaves no spending -- and no
partner -- that never happened.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import attr
from dp_accounting import dp_event
from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine, write_locked
from fedinsight.core.errors import BudgetExceededError, ConfigError, UnknownPartnerError

ACCOUNTANTS = ("rdp", "pld")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class BudgetRow(Base):
    __tablename__ = "privacy_budgets"

    partner_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


class BudgetChangeRow(Base):
    __tablename__ = "privacy_budget_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("privacy_budgets.partner_id"))
    old_epsilon: Mapped[float | None] = mapped_column(Float, nullable=True)
    new_epsilon: Mapped[float] = mapped_column(Float)
    old_delta: Mapped[float | None] = mapped_column(Float, nullable=True)
    new_delta: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


class ChargeRow(Base):
    __tablename__ = "privacy_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("privacy_budgets.partner_id"), index=True)
    job_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # "training" | "query" | ...
    description: Mapped[str] = mapped_column(Text, default="")
    requester: Mapped[str] = mapped_column(String(128), default="")
    event_json: Mapped[str] = mapped_column(Text)
    epsilon_after: Mapped[float] = mapped_column(Float)  # cumulative epsilon at the budget's delta
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


# --- thresholding deltas --------------------------------------------------------------------------

@attr.s(frozen=True, slots=True, auto_attribs=True)
class ThresholdDeltaEvent(dp_event.DpEvent):
    """The delta of a release that shows a key only when its noisy count clears a threshold (insights' key
    discovery, baskets' item selection): with probability ``delta`` a key of a handful of customers shows.

    Why its own event: such a release is (epsilon, delta_noise + delta)-DP and no accountant's epsilon covers
    that additive delta, so :func:`compose_epsilon` takes every recorded one from the delta it states epsilon
    at. A partner's budget (epsilon, delta) then holds for everything it released, thresholds included, and a
    partner's own ledger enforces it whatever delta a coordinator's message names.
    """

    delta: float

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.delta, int | float) and 0 <= self.delta < 1):
            raise ConfigError(f"a thresholding delta must be in [0, 1) (got {self.delta})")


THRESHOLD_DELTA_SHARE = 1e-3
"""A thresholding release's default delta, as a share of the delta its job is stated at (1e-9 at 1e-6).

Why this small: thresholding deltas add up over a partner's whole history and come out of its one budget delta,
so at a tenth of the job's delta ten key discoveries would use up a partner's default delta 1e-6 for good; at a
thousandth a thousand would. It costs little: the threshold grows with sqrt(log(1/delta)), ~13 % from 1e-7 to 1e-9."""


def _without_thresholds(event: dp_event.DpEvent) -> tuple[dp_event.DpEvent | None, float]:
    """``event`` with its thresholding deltas taken out (None if nothing is left), and their sum."""
    if isinstance(event, ThresholdDeltaEvent):
        return None, float(event.delta)
    if isinstance(event, dp_event.ComposedDpEvent):
        parts = [_without_thresholds(e) for e in event.events]
        kept = [e for e, _ in parts if e is not None]
        total = sum(d for _, d in parts)
        if not total:
            return event, 0.0
        return (dp_event.ComposedDpEvent(kept) if kept else None), total
    if isinstance(event, dp_event.SelfComposedDpEvent):
        inner, total = _without_thresholds(event.event)
        if not total:
            return event, 0.0
        return (dp_event.SelfComposedDpEvent(inner, event.count) if inner is not None else None), total * event.count
    return event, 0.0


def split_thresholds(events: Sequence[dp_event.DpEvent]) -> tuple[list[dp_event.DpEvent], float]:
    """The events an accountant composes, and the thresholding deltas they carried, summed."""
    kept, total = [], 0.0
    for event in events:
        inner, d = _without_thresholds(event)
        total += d
        if inner is not None:
            kept.append(inner)
    return kept, total


def threshold_delta(events: Sequence[dp_event.DpEvent]) -> float:
    """The sum of the thresholding deltas in ``events`` (nested and self-composed ones counted as often as
    they run)."""
    return split_thresholds(events)[1]


# --- DpEvent <-> JSON -----------------------------------------------------------------------------

def event_to_dict(event: dp_event.DpEvent) -> dict[str, Any]:
    """Serialise a dp_accounting event (attrs classes, possibly nested) to plain JSON data."""
    if not isinstance(event, dp_event.DpEvent):
        raise ConfigError(f"not a dp_accounting DpEvent: {event!r}")
    out: dict[str, Any] = {"type": type(event).__name__}
    for field in attr.fields(type(event)):
        value = getattr(event, field.name)
        if isinstance(value, dp_event.DpEvent):
            value = event_to_dict(value)
        elif isinstance(value, list | tuple) and value and isinstance(value[0], dp_event.DpEvent):
            value = [event_to_dict(v) for v in value]
        out[field.name] = value
    return out


def event_from_dict(data: dict[str, Any]) -> dp_event.DpEvent:
    """Inverse of :func:`event_to_dict`."""
    cls = ThresholdDeltaEvent if data["type"] == "ThresholdDeltaEvent" else getattr(dp_event, data["type"], None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, dp_event.DpEvent)):
        raise ConfigError(f"unknown DpEvent type {data['type']!r}")
    kwargs = {}
    for field in attr.fields(cls):
        value = data[field.name]
        if isinstance(value, dict) and "type" in value:
            value = event_from_dict(value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            value = [event_from_dict(v) for v in value]
        kwargs[field.name] = value
    return cls(**kwargs)


def _count_events(events: Sequence[dp_event.DpEvent], times: int, into: dict[dp_event.DpEvent, int]) -> None:
    for event in events:
        if isinstance(event, dp_event.ComposedDpEvent):
            _count_events(event.events, times, into)
        elif isinstance(event, dp_event.SelfComposedDpEvent):
            _count_events([event.event], times * int(event.count), into)
        else:
            into[event] = into.get(event, 0) + times


def _grouped(events: Sequence[dp_event.DpEvent]) -> frozenset[tuple[dp_event.DpEvent, int]] | None:
    """``events`` as {mechanism: how many times}, or None if one of them cannot be a dictionary key.

    Composition is commutative and associative, and n runs of one mechanism are that mechanism self-composed
    n times, so the grouped form has exactly the same epsilon -- but costs one accountant step per distinct
    mechanism instead of one per charge (a partner's ledger grows by a few charges every round).
    """
    counts: dict[dp_event.DpEvent, int] = {}
    try:
        _count_events(events, 1, counts)
    except TypeError:  # an event holding a list (say, an unknown composite): compose it as given
        return None
    return frozenset(counts.items())


@functools.lru_cache(maxsize=4096)
def _compose_grouped(groups: frozenset[tuple[dp_event.DpEvent, int]], delta: float, accountant: str) -> float:
    ordered = sorted(groups, key=repr)  # a fixed order: the same figure whatever order the charges came in
    return _compose([e if n == 1 else dp_event.SelfComposedDpEvent(e, n) for e, n in ordered], delta, accountant)


def compose_epsilon(events: Sequence[dp_event.DpEvent], delta: float, accountant: str = "rdp") -> float:
    """Cumulative epsilon at ``delta`` of all ``events``, by Google's dp_accounting.

    ``delta`` is the whole delta: the thresholding deltas among ``events`` (:class:`ThresholdDeltaEvent`) are
    taken from it and the rest is composed at what is left (infinite when nothing is left). Identical
    mechanisms are composed as one self-composed event and the figure is remembered (the accountant is a pure
    function of the multiset of events): budget checks on every partner message stay cheap however long the
    ledger gets.
    """
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"unknown accountant '{accountant}', expected one of {', '.join(ACCOUNTANTS)}")
    events, thresholds = split_thresholds(events)
    if thresholds:
        if thresholds >= delta:
            return math.inf
        delta = delta - thresholds
    if not events:
        return 0.0
    groups = _grouped(events)
    if groups is None:
        return _compose(list(events), delta, accountant)
    return _compose_grouped(groups, float(delta), accountant)


def _compose(events: list[dp_event.DpEvent], delta: float, accountant: str) -> float:
    if accountant == "rdp":
        from dp_accounting.rdp import RdpAccountant

        acc = RdpAccountant()
    elif accountant == "pld":
        from dp_accounting.pld import PLDAccountant

        acc = PLDAccountant()
    else:
        raise ConfigError(f"unknown accountant '{accountant}', expected one of {', '.join(ACCOUNTANTS)}")
    composed = dp_event.ComposedDpEvent(list(events))
    if not acc.supports(composed):
        raise ConfigError(f"the {accountant} accountant cannot account for {composed}")
    acc.compose(composed)
    return float(acc.get_epsilon(delta))


def dpsgd_event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_event.DpEvent:
    """The event of ``steps`` Poisson-subsampled Gaussian DP-SGD steps (what Opacus runs)."""
    return dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(sample_rate, dp_event.GaussianDpEvent(noise_multiplier)), int(steps)
    )


# --- the ledger ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetStatus:
    """A partner's budget and what is spent of it (epsilon at the budget's delta)."""

    partner_id: str
    epsilon_budget: float
    delta: float
    epsilon_spent: float
    charges: int

    @property
    def epsilon_remaining(self) -> float:
        return max(0.0, self.epsilon_budget - self.epsilon_spent)


@dataclass(frozen=True)
class Charge:
    """One recorded release."""

    id: int
    partner_id: str
    job_id: str
    kind: str
    description: str
    requester: str
    event: dp_event.DpEvent
    epsilon_after: float
    created_at: datetime


class PrivacyLedger:
    """Persistent per-partner privacy budgets with atomic check-and-charge.

    ``url``: any SQLAlchemy URL (default: ``$FEDINSIGHT_DB_URL`` or SQLite under ``$FEDINSIGHT_HOME``).
    """

    def __init__(self, url: str | None = None, *, accountant: str = "rdp") -> None:
        if accountant not in ACCOUNTANTS:
            raise ConfigError(f"unknown accountant '{accountant}', expected one of {', '.join(ACCOUNTANTS)}")
        self.accountant = accountant
        self.engine = make_engine(url)
        self._writer = write_locked(self.engine)
        create_tables(self.engine, [BudgetRow.__table__, BudgetChangeRow.__table__, ChargeRow.__table__])

    # budgets
    def set_budget(
        self, partner_id: str, epsilon: float, delta: float, *, reason: str = "initial budget",
        changed_by: str = "operator", unlimited: bool = False,
    ) -> BudgetStatus:
        """Create a partner's budget, or change it explicitly (the change is recorded, never silent).

        ``unlimited=True`` admits ``epsilon = inf``: a record-only ledger (a simulated partner without a cap
        of its own still records what it released, and each job's target is still checked against it)."""
        if not (epsilon > 0 and (math.isfinite(epsilon) or (unlimited and epsilon == math.inf))):
            raise ConfigError(f"epsilon budget must be a positive number (got {epsilon})")
        if not (0 < delta < 1):
            raise ConfigError(f"delta must be in (0, 1) (got {delta})")
        with Session(self._writer) as session, session.begin():
            row = session.get(BudgetRow, partner_id, with_for_update=True)
            if row is None:
                session.add(BudgetRow(partner_id=partner_id, epsilon=epsilon, delta=delta))
                session.flush()
                session.add(BudgetChangeRow(partner_id=partner_id, old_epsilon=None, new_epsilon=epsilon,
                                            old_delta=None, new_delta=delta, reason=reason, changed_by=changed_by))
            elif (row.epsilon, row.delta) != (epsilon, delta):
                session.add(BudgetChangeRow(partner_id=partner_id, old_epsilon=row.epsilon, new_epsilon=epsilon,
                                            old_delta=row.delta, new_delta=delta, reason=reason,
                                            changed_by=changed_by))
                row.epsilon, row.delta = epsilon, delta
        return self.status(partner_id)

    def ensure_budget(self, partner_id: str, epsilon: float, delta: float) -> BudgetStatus:
        """Create the budget if the partner has none; an existing budget is left exactly as it is."""
        with Session(self.engine) as session:
            exists = session.get(BudgetRow, partner_id) is not None
        return self.status(partner_id) if exists else self.set_budget(partner_id, epsilon, delta)

    def partners(self) -> list[str]:
        with Session(self.engine) as session:
            return list(session.scalars(select(BudgetRow.partner_id).order_by(BudgetRow.partner_id)))

    def events(self, partner_id: str) -> list[dp_event.DpEvent]:
        """Every event recorded for the partner, in order (none for a partner the ledger does not know)."""
        with Session(self.engine) as session:
            return self._events(session, partner_id)

    def _events(self, session: Session, partner_id: str) -> list[dp_event.DpEvent]:
        rows = session.scalars(select(ChargeRow.event_json).where(ChargeRow.partner_id == partner_id)
                               .order_by(ChargeRow.id))
        return [event_from_dict(json.loads(r)) for r in rows]

    def _budget(self, session: Session, partner_id: str, *, lock: bool = False) -> BudgetRow:
        row = session.get(BudgetRow, partner_id, with_for_update=lock)
        if row is None:
            known = ", ".join(session.scalars(select(BudgetRow.partner_id).order_by(BudgetRow.partner_id))) or "none"
            raise UnknownPartnerError(f"no privacy budget for partner '{partner_id}' (known partners: {known})")
        return row

    def status(self, partner_id: str) -> BudgetStatus:
        with Session(self.engine) as session:
            row = self._budget(session, partner_id)
            events = self._events(session, partner_id)
            return BudgetStatus(partner_id, row.epsilon, row.delta,
                                compose_epsilon(events, row.delta, self.accountant), len(events))

    def price(self, partner_id: str, events: Sequence[dp_event.DpEvent]) -> float:
        """Cumulative epsilon the partner would have after ``events`` (nothing is recorded)."""
        with Session(self.engine) as session:
            row = self._budget(session, partner_id)
            return compose_epsilon([*self._events(session, partner_id), *events], row.delta, self.accountant)

    def charge(
        self,
        partner_ids: Sequence[str] | str,
        event: dp_event.DpEvent,
        *,
        job_id: str,
        kind: str,
        description: str = "",
        requester: str = "",
    ) -> dict[str, float]:
        """Atomically check and record ``event`` for every partner in ``partner_ids``.

        Either every partner can afford it and all are charged, or none is and
        :class:`BudgetExceededError` names who cannot (with their remaining budget).
        Returns the cumulative epsilon per partner after the charge.
        """
        ids = [partner_ids] if isinstance(partner_ids, str) else list(partner_ids)
        payload = json.dumps(event_to_dict(event))
        with Session(self._writer) as session, session.begin():
            after: dict[str, float] = {}
            refused: list[str] = []
            for pid in sorted(ids):  # fixed lock order: no deadlocks between concurrent charges
                row = self._budget(session, pid, lock=True)
                before_events = self._events(session, pid)
                eps_after = compose_epsilon([*before_events, event], row.delta, self.accountant)
                if eps_after > row.epsilon + 1e-9:
                    spent = compose_epsilon(before_events, row.delta, self.accountant)
                    refused.append(
                        f"{pid}: would reach epsilon {eps_after:.4g} > budget {row.epsilon:.4g} "
                        f"(spent {spent:.4g}, remaining {max(0.0, row.epsilon - spent):.4g}, delta {row.delta:g})"
                    )
                after[pid] = eps_after
            if refused:
                raise BudgetExceededError(f"refused {kind} '{job_id}': " + "; ".join(refused))
            for pid in sorted(ids):
                session.add(ChargeRow(partner_id=pid, job_id=job_id, kind=kind, description=description,
                                      requester=requester, event_json=payload, epsilon_after=after[pid]))
        return after

    def charge_all(
        self,
        partner_ids: Sequence[str],
        entries: Sequence[tuple[dp_event.DpEvent, str, str]],
        *,
        job_id: str,
        requester: str = "",
        create: tuple[float, float] | None = None,
    ) -> dict[str, float]:
        """Atomically check and record several releases ``(event, kind, description)`` for every partner.

        All partners can afford all of them and everything is recorded, or nothing is recorded at all and
        :class:`BudgetExceededError` names every partner that cannot. ``create = (epsilon, delta)`` gives a
        partner without a budget that budget -- inside the same transaction, so a refused job leaves no
        budget behind either. Returns each partner's cumulative epsilon after the last entry.
        """
        if not entries:
            return {}
        payloads = [json.dumps(event_to_dict(event)) for event, _, _ in entries]
        with Session(self._writer) as session, session.begin():
            refused: list[str] = []
            rows: dict[str, tuple[BudgetRow, list[float]]] = {}
            for pid in sorted(set(partner_ids)):  # fixed lock order: no deadlocks between concurrent charges
                row = session.get(BudgetRow, pid, with_for_update=True)
                if row is None and create is not None:
                    epsilon, delta = create
                    if not (epsilon > 0 and math.isfinite(epsilon)) or not 0 < delta < 1:
                        raise ConfigError(f"budget ({epsilon}, {delta}) for new partner '{pid}' is not valid")
                    row = BudgetRow(partner_id=pid, epsilon=epsilon, delta=delta)
                    session.add(row)
                    session.flush()
                    session.add(BudgetChangeRow(partner_id=pid, old_epsilon=None, new_epsilon=epsilon,
                                                old_delta=None, new_delta=delta, reason="initial budget",
                                                changed_by=requester or "job"))
                elif row is None:
                    row = self._budget(session, pid)  # raises UnknownPartnerError naming the known partners
                before = self._events(session, pid)
                running = [compose_epsilon([*before, *(e for e, _, _ in entries[: i + 1])], row.delta,
                                           self.accountant) for i in range(len(entries))]
                if running[-1] > row.epsilon + 1e-9:
                    spent = compose_epsilon(before, row.delta, self.accountant)
                    refused.append(
                        f"{pid}: would reach epsilon {running[-1]:.4g} > budget {row.epsilon:.4g} "
                        f"(spent {spent:.4g}, remaining {max(0.0, row.epsilon - spent):.4g}, delta {row.delta:g})")
                rows[pid] = (row, running)
            if refused:
                raise BudgetExceededError(f"refused job '{job_id}' before any partner computed: " + "; ".join(refused))
            for pid, (_, running) in rows.items():
                for (_, kind, description), payload, after in zip(entries, payloads, running, strict=True):
                    session.add(ChargeRow(partner_id=pid, job_id=job_id, kind=kind, description=description,
                                          requester=requester, event_json=payload, epsilon_after=after))
        return {pid: running[-1] for pid, (_, running) in rows.items()}

    def withdraw(self, job_id: str, partner_ids: Sequence[str], *, created: Sequence[str] = ()) -> list[str]:
        """Take back job ``job_id``'s charges of ``partner_ids`` (partners that released nothing under it); the
        partners that had charges withdrawn.

        ``created``: partners whose budget this job created (a simulated partner's first job): with no charge
        left, their budget goes too, so the ledger's partner list is what it was. Later charges' cumulative
        epsilon is recomputed without the withdrawn events. One transaction.
        """
        withdrawn: list[str] = []
        with Session(self._writer) as session, session.begin():
            for pid in sorted(set(partner_ids)):
                rows = list(session.scalars(select(ChargeRow).where(ChargeRow.partner_id == pid,
                                                                    ChargeRow.job_id == job_id)))
                if not rows:
                    continue
                first = min(r.id for r in rows)
                for row in rows:
                    session.delete(row)
                session.flush()
                budget = self._budget(session, pid)
                kept = list(session.scalars(select(ChargeRow).where(ChargeRow.partner_id == pid)
                                            .order_by(ChargeRow.id)))
                events: list[dp_event.DpEvent] = []
                for row in kept:
                    events.append(event_from_dict(json.loads(row.event_json)))
                    if row.id > first:
                        row.epsilon_after = compose_epsilon(events, budget.delta, self.accountant)
                withdrawn.append(pid)
            for pid in sorted(set(created) & set(partner_ids)):
                if session.scalars(select(ChargeRow.id).where(ChargeRow.partner_id == pid).limit(1)).first() is None:
                    for change in session.scalars(select(BudgetChangeRow).where(BudgetChangeRow.partner_id == pid)):
                        session.delete(change)
                    session.flush()
                    budget = session.get(BudgetRow, pid)
                    if budget is not None:
                        session.delete(budget)
        return withdrawn

    def job_events(self, partner_id: str, job_id: str) -> list[dp_event.DpEvent]:
        """The events recorded for one job of one partner, in order."""
        with Session(self.engine) as session:
            rows = session.scalars(select(ChargeRow.event_json).where(ChargeRow.partner_id == partner_id,
                                                                       ChargeRow.job_id == job_id)
                                   .order_by(ChargeRow.id))
            return [event_from_dict(json.loads(r)) for r in rows]

    def charges(self, partner_id: str | None = None) -> list[Charge]:
        with Session(self.engine) as session:
            query = select(ChargeRow).order_by(ChargeRow.id)
            if partner_id is not None:
                self._budget(session, partner_id)
                query = query.where(ChargeRow.partner_id == partner_id)
            return [
                Charge(r.id, r.partner_id, r.job_id, r.kind, r.description, r.requester,
                       event_from_dict(json.loads(r.event_json)), r.epsilon_after, r.created_at)
                for r in session.scalars(query)
            ]
