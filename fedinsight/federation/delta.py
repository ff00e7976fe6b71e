"""A job's delta: the one its submitter gives, or the largest every partner accepts.

Every partner refuses a DP job stated at a delta above 1 / (10 x its customers)
(:func:`fedinsight.federation.budget.check_job_delta`), so a fixed default of 1e-6 was refused by every partner of
more than 100,000 customers. A job without ``--delta`` now asks in hello: each partner states its *ceiling*, the
largest power of ten it accepts (:func:`~fedinsight.federation.budget.delta_ceiling`), and the job takes the
smallest ceiling, at most 1e-6 (:func:`~fedinsight.federation.budget.default_job_delta`), before its plan and
charge. The ceiling is public by a stated reason (its size to a factor of ten, which the partner's refusals would
tell anyway). A delta the submitter gives is never changed: a partner that cannot accept it refuses in hello.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from flwr.app import Message, MetricRecord

from fedinsight.federation.budget import DEFAULT_DELTA, default_job_delta
from fedinsight.federation.manifest import PUBLIC, Release
from fedinsight.federation.options import Options

DELTA_RECORD = "delta"

RULE_GIVEN = "given by the submitter"
RULE_DEFAULT = (f"default: the smallest of {DEFAULT_DELTA:g} and every partner's ceiling (the largest power of ten at "
                "most 1 / (10 x its customers))")


def delta_release() -> Release:
    """The hello record a partner states its ceiling in (every task: the framework's own)."""
    return Release("hello", DELTA_RECORD, {"ceiling": None}, PUBLIC,
                   what="the largest power of ten the partner accepts as the job's delta (1 / (10 x its customers), "
                        "rounded down to a power of ten); sent only for a DP job without a given delta",
                   reason="the partner's size to a factor of ten, not any customer's data; a coordinator trying "
                          "deltas one after another would learn it from the partner's refusals anyway")


def ceiling_record(ceiling: float) -> MetricRecord:
    return MetricRecord({"ceiling": float(ceiling)})


def ceiling_of(msg: Message) -> float | None:
    """The ceiling a hello reply states, if any."""
    if DELTA_RECORD not in msg.content:
        return None
    return float(msg.content[DELTA_RECORD]["ceiling"])  # type: ignore[arg-type]


def resolve(options: Options, ceilings: Iterable[float | None], *, private: bool) -> tuple[Options, str | None]:
    """``options`` with the job's delta filled in, and the rule that chose it (``None``: a task without a delta,
    or a non-private job). A partner that states no ceiling (it does not know its customers) is taken at the
    default."""
    if not private or not hasattr(options, "delta"):
        return options, None
    if getattr(options, "delta", None) is not None:
        return options, RULE_GIVEN
    delta = default_job_delta([c for c in ceilings if c is not None])
    return dataclasses.replace(options, delta=delta), RULE_DEFAULT  # type: ignore[type-var]


def with_ceiling(records: dict[str, Any], ceiling: float | None) -> dict[str, Any]:
    """A hello reply's records with the partner's ceiling (when it states one)."""
    return records if ceiling is None else {**records, DELTA_RECORD: ceiling_record(ceiling)}


HELP = ("Delta the job's epsilon is stated at (default: the largest every partner accepts, at most 1e-6; each "
        "partner refuses a delta above 1 / (10 x its customers)).")
"""The ``--delta`` help every DP task shares."""


def provisional(delta: float | None) -> float:
    """A job's delta before hello (checks and previews): the one given, else the most it can be (1e-6)."""
    return float(delta) if delta is not None else DEFAULT_DELTA
