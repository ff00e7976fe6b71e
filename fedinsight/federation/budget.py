"""The one budget path, on both sides of a job.

**Coordinator** (:func:`charge_before_compute`): after the partners have said who they are and before any
of them computes anything, the job's planned DP releases (its manifest's events) are priced on every
partner's ledger entry and charged in one transaction -- or the job is refused, naming every partner
that cannot afford it, and nothing is recorded (not even the budget row of a new simulated partner).
When the job ends, :func:`withdraw_unspent` takes the charge back from partners that released nothing
private under it (they refused, failed, or were never asked; :mod:`fedinsight.federation.exposure`), with
the budget row the job created for them: a refused or failed job leaves no phantom spending or partner.

**Partner** (:class:`BudgetGate`): every DP release a task's handlers make passes through the partner's
own gate, which holds whatever the coordinator sends:

- its *lifetime* cap (``epsilon`` / ``delta`` in its node config) over everything it ever released,
  recorded in its own ledger (``ledger-url``; by default a SQLite file in its state folder);
- the *job's* target (the epsilon the coordinator priced the job at): a coordinator cannot run more
  rounds or queries under a job than it charged for;
- ``require-dp``: a partner that requires DP refuses non-private jobs outright (deployed partners do by
  default).

Both sides compose with Google's ``dp_accounting`` (:mod:`fedinsight.privacy.ledger`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dp_accounting import dp_event

from fedinsight.core.errors import BudgetExceededError, ConfigError
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon, threshold_delta


@dataclass(frozen=True)
class Charge:
    """One line of a job's bill: a DP event, what it is for."""

    kind: str  # "training", "query", "stats", "evaluation"
    event: dp_event.DpEvent
    description: str


def charge_before_compute(ledger: PrivacyLedger, partner_ids: Sequence[str], charges: Sequence[Charge], *,
                          job_id: str, requester: str, budget: tuple[float, float] | None = None,
                          ) -> dict[str, float]:
    """Charge every partner for the whole job, all or nothing; each partner's epsilon after the charge.

    ``budget`` creates the budget of a partner the ledger does not know yet (simulation); without it such
    a partner is an error. Raises :class:`BudgetExceededError` before any partner computes.
    """
    if not charges:
        return {pid: ledger.status(pid).epsilon_spent for pid in partner_ids} if budget is None else {}
    return ledger.charge_all(list(partner_ids), [(c.event, c.kind, c.description) for c in charges],
                             job_id=job_id, requester=requester, create=budget)


def withdraw_unspent(ledger: PrivacyLedger, job_id: str, partner_ids: Sequence[str], *,
                     created: Sequence[str] = ()) -> list[str]:
    """Take back the job's charge of partners that released nothing private under it (the coordinator watched
    every reply: :mod:`fedinsight.federation.exposure`); budgets the job created go with their last charge.
    Returns the partners whose charge was withdrawn."""
    return ledger.withdraw(job_id, partner_ids, created=created)


def composed_epsilon(charges: Sequence[Charge], delta: float, accountant: str = "rdp") -> float:
    """The job's epsilon at ``delta`` plus its thresholding deltas (the way a job is stated: "epsilon at delta,
    plus delta' for thresholding")."""
    events = [c.event for c in charges]
    return stated_epsilon(events, delta, accountant)


def stated_epsilon(events: Sequence[dp_event.DpEvent], delta: float, accountant: str = "rdp") -> float:
    """Epsilon of one job's ``events`` at ``delta``, its thresholding deltas being *added* to ``delta`` (a job
    states its epsilon at its delta, plus its thresholds'; a ledger takes the thresholds from its budget's delta)."""
    return compose_epsilon(events, delta + threshold_delta(events), accountant)


# --- the partner's delta rule ----------------------------------------------------------------------

def delta_limit(customers: int) -> float:
    """The largest delta a partner with ``customers`` customers accepts: 1 / (10 x customers).

    Why: delta bounds the chance that the guarantee fails; with n customers and delta above 1/n it could fail for
    one of them outright (a mechanism that publishes one random customer's row is (0, 1/n)-DP)."""
    return 1.0 / (10.0 * max(int(customers), 1))


DEFAULT_DELTA = 1e-6
"""The largest delta a job is stated at when its submitter gives none (:func:`default_job_delta`)."""


def delta_ceiling(customers: int) -> float:
    """The largest power of ten a partner with ``customers`` customers accepts as a job's delta (at most
    :func:`delta_limit`). It is what a partner states in hello, in place of its count: its size to a factor of ten,
    which its refusals would tell a coordinator trying deltas one after another anyway."""
    return 10.0 ** math.floor(math.log10(delta_limit(customers)) + 1e-9)


def default_job_delta(ceilings: Sequence[float]) -> float:
    """A job's delta when its submitter gives none: :data:`DEFAULT_DELTA`, or the smallest partner ceiling
    (:func:`delta_ceiling`) if that is smaller, so the largest partner accepts the job as it comes."""
    return min([DEFAULT_DELTA, *ceilings])


def check_job_delta(partner_id: str, delta: float, customers: int) -> None:
    """Refuse a DP job stated at a delta above :func:`delta_limit`. The error names a power of ten that would
    do, not the partner's count (which is not public)."""
    limit = delta_limit(customers)
    if delta > limit * (1 + 1e-9):
        raise ConfigError(f"partner {partner_id}: delta {delta:g} is above 1 / (10 x its number of customers); "
                          f"run the job with --delta {delta_ceiling(customers):g} or smaller (or without --delta: "
                          "the job then takes the largest delta every partner accepts)")


# --- the partner's gate ---------------------------------------------------------------------------

def _check_named(job_id: str, job_delta: float | None) -> None:
    """A DP message must name the job's delta (a coordinator resolves a default one in hello, before any compute
    message): without it the partner could not state what it spends."""
    if job_delta is None or not 0 < float(job_delta) < 1:
        raise ConfigError(f"job '{job_id}': the coordinator's message names no valid delta ({job_delta!r}); refused")


@dataclass(frozen=True)
class GateStatus:
    """What the partner's accounting says after (or instead of) a release."""

    epsilon_lifetime: float  # the partner's cumulative epsilon over every job, at its own delta
    epsilon_job: float  # this job's epsilon at the job's delta
    cap: float  # the partner's own lifetime cap (inf: none)


@dataclass(frozen=True)
class Refusal:
    """Which limit a release would pass: the partner's own (``partner``) or the job's (``job``)."""

    limit: str
    epsilon: float  # the limit
    would_be: float  # the epsilon the release would have brought it to (at that limit's delta)
    reason: str


class BudgetGate:
    """The partner's own budget: every DP release of every task is recorded here, or refused.

    ``ledger``: the partner's ledger (one budget row, its own id). ``cap``/``delta``: its lifetime cap,
    ``None`` for no cap of its own (simulated partners; the coordinator's ledger still limits every job).
    """

    def __init__(self, partner_id: str, ledger: PrivacyLedger, *, cap: float | None, delta: float,
                 require_dp: bool) -> None:
        self.partner_id = partner_id
        self.ledger = ledger
        self.cap = math.inf if cap is None else float(cap)
        self.delta = float(delta)
        self.require_dp = require_dp
        self.customers: Callable[[], int] | None = None  # the partner's customer count, for the delta rule
        self._recorded = False  # the ledger holds this cap (written with the first release, not before)

    def _record_cap(self) -> None:
        """The partner's budget row with its current cap: created (or its change recorded) by the first release,
        so a job that is refused or fails before the partner releases anything leaves its ledger as it was."""
        if self._recorded:
            return
        if self.partner_id not in self.ledger.partners():
            self.ledger.set_budget(self.partner_id, self.cap, self.delta, reason="the partner's own cap",
                                   changed_by="partner", unlimited=True)
        else:
            status = self.ledger.status(self.partner_id)
            if (status.epsilon_budget, status.delta) != (self.cap, self.delta):
                self.ledger.set_budget(self.partner_id, self.cap, self.delta,
                                       reason="the partner changed its own cap", changed_by="partner", unlimited=True)
        self._recorded = True

    def _lifetime(self, events: Sequence[dp_event.DpEvent] = ()) -> float:
        """The partner's epsilon over everything it released (and ``events``), at its own delta."""
        return compose_epsilon([*self.ledger.events(self.partner_id), *events], self.delta, self.ledger.accountant)

    def check_delta(self, job_delta: float) -> None:
        """The delta rule (:func:`check_job_delta`) on this partner's customers: in hello for the job's options,
        and again on every spend for the delta the message names (whatever the coordinator sends)."""
        if self.customers is not None:
            check_job_delta(self.partner_id, job_delta, self.customers())

    def delta_ceiling(self) -> float | None:
        """This partner's :func:`delta_ceiling` (``None`` when it does not know its customers)."""
        return None if self.customers is None else delta_ceiling(self.customers())

    def allow(self, private: bool) -> None:
        """Refuse a non-private job if this partner requires DP (before anything is computed)."""
        if not private and self.require_dp:
            raise BudgetExceededError(f"partner {self.partner_id} only takes part in differentially private jobs "
                                      "(require-dp); refused")

    def status(self, job_id: str, job_delta: float | None) -> GateStatus:
        """The partner's accounting (a non-private job, which names no delta, has spent nothing of its own)."""
        spent = self.ledger.job_events(self.partner_id, job_id)
        if not spent:
            return GateStatus(self._lifetime(), 0.0, self.cap)
        _check_named(job_id, job_delta)
        return GateStatus(self._lifetime(), stated_epsilon(spent, job_delta), self.cap)  # type: ignore[arg-type]

    def binding(self, job_id: str, events: Sequence[dp_event.DpEvent], *, job_epsilon: float,
                job_delta: float) -> Refusal | None:
        """The limit ``events`` would pass -- the partner's own cap first, then the job's target -- or None."""
        if not events:  # nothing to release (a non-private job's step): no limit to pass
            return None
        _check_named(job_id, job_delta)
        after_all = self._lifetime(events)
        if math.isinf(after_all):  # even without a cap: thresholds that use up its delta leave no guarantee
            return Refusal("partner", self.cap, after_all,
                           f"partner {self.partner_id}: the release's thresholding delta would use up what is left of "
                           f"its delta {self.delta:g} (no epsilon holds then)")
        if after_all > self.cap * (1 + 1e-9):
            return Refusal("partner", self.cap, after_all,
                           f"partner {self.partner_id}: the release would take its customers to epsilon "
                           f"{after_all:.4g} > its own cap {self.cap:g}")
        after_job = stated_epsilon([*self.ledger.job_events(self.partner_id, job_id), *events], job_delta)
        if after_job > job_epsilon * (1 + 1e-6):
            return Refusal("job", job_epsilon, after_job,
                           f"partner {self.partner_id}: the release would take job '{job_id}' to epsilon "
                           f"{after_job:.4g} > the {job_epsilon:g} it was charged for")
        return None

    def would_refuse(self, job_id: str, events: Sequence[dp_event.DpEvent], *, job_epsilon: float,
                     job_delta: float) -> str | None:
        """Why ``events`` would be refused (lifetime cap or job target), or None."""
        found = self.binding(job_id, events, job_epsilon=job_epsilon, job_delta=job_delta)
        return None if found is None else found.reason

    def spend(self, job_id: str, events: Sequence[dp_event.DpEvent], *, job_epsilon: float, job_delta: float,
              kind: str, description: str) -> GateStatus:
        """Record ``events`` if both the lifetime cap and the job's target allow them; else BudgetExceededError."""
        if not events:
            return self.status(job_id, job_delta)
        if not job_epsilon > 0:
            raise ConfigError(f"job '{job_id}' carries no epsilon target; refused")
        _check_named(job_id, job_delta)
        # the job's whole delta: the one it is stated at plus every thresholding delta it carries, whatever the
        # coordinator's messages name
        self.check_delta(job_delta + threshold_delta([*self.ledger.job_events(self.partner_id, job_id), *events]))
        reason = self.would_refuse(job_id, events, job_epsilon=job_epsilon, job_delta=job_delta)
        if reason is not None:
            raise BudgetExceededError(reason + "; refused")
        event = events[0] if len(events) == 1 else dp_event.ComposedDpEvent(list(events))
        self._record_cap()
        self.ledger.charge(self.partner_id, event, job_id=job_id, kind=kind, description=description,
                           requester="coordinator")
        return self.status(job_id, job_delta)
