"""Schemathesis against the insights API in-process (ASGI): for every operation in ``/openapi.json`` and every
role (admin, analyst, auditor tokens and anonymous), at least 30 generated requests; any 5xx, an undeclared
status code, a wrong content type or a response body that does not match its declared schema fails the test.
On SQLite, and on a throw-away PostgreSQL server when its binaries are installed (``tests/support/postgres.py``).

Why derandomized: the generated requests are the same on every run, so a failure is reproducible and the
test cannot pass or fail by luck; the corpus still covers bounds, unicode, huge numbers and odd bodies.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine
from support.sessions import session_for

from fedinsight.coordinator.anomaly import AccessMonitor, AnomalyLimits
from fedinsight.coordinator.api import create_app
from fedinsight.coordinator.rate_limits import SharedTokenBucket
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.core.db import make_engine

ROLES = ("admin", "analyst", "auditor", "anonymous")
EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
UNLIMITED = {"requests_per_second": 1e6, "burst": 10**6, "insight_reads_per_minute": 10**9,
             "anonymous_requests_per_second": 1e6, "anonymous_burst": 10**6,
             "anomaly": AnomalyLimits(requests=10**9, records=10**9, distinct_insights=10**9, bytes=10**12,
                                      overlapping_queries=10**9)}
"""The fuzzer sends hundreds of requests per token, many alike: rate limits would turn most of them into 429s
and the access monitor would lock the tokens (both have their own tests)."""


def _state(url: str, folder: Path) -> CoordinatorState:
    state = CoordinatorState(url, folder)
    for pid, eps in (("retail", 4.0), ("bank", 2.0)):
        state.ledger.set_budget(pid, eps, 1e-6)
    state.insights.save("job-1", [{"name": "segment-profile-rfm", "kind": "segment_profile", "query": {},
                                   "epsilon": 0.5, "delta": 1e-6, "partners": 2, "suppressed_groups": 0,
                                   "values": [120.5, 80.2], "ci95": 4.1}], requester="analyst")
    return state


def _runner(strategy: Any, headers: dict[str, str], key: tuple[str, str], sent: Counter[tuple[str, str]],
            examples: int = EXAMPLES) -> Any:
    """A Hypothesis test sending ``strategy``'s generated requests with ``headers``, checking each response."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(case=strategy)
    def run(case: Any) -> None:
        sent[key] += 1
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    return run


def _fuzz(state: CoordinatorState) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """Run every operation for every role: valid requests (and the schema's own examples), and invalid ones where
    an operation has parameters or a body to get wrong. The number of requests sent per (operation, role)."""

    def submit(task, options, who):  # noqa: ANN001, ANN202
        return state.jobs.create(task=task, federation="fedinsight", run_config=options,
                                 requester=f"token:{who.token_id}")

    app = create_app(state, submit=submit, **UNLIMITED)
    tokens = {role: state.tokens.create(f"{role}-fuzz", role)[0] for role in ROLES if role != "anonymous"}
    for role in ("admin", "auditor"):  # human roles work through a session opened with a second factor
        tokens[role] = session_for(state, tokens[role])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    valid: Counter[tuple[str, str]] = Counter()
    invalid: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        can_be_wrong = bool(operation.query or operation.body)  # a path parameter here is any string
        for role in ROLES:
            headers = {"Authorization": f"Bearer {tokens[role]}"} if role in tokens else {}
            key = (operation.label, role)
            runs = [_runner(operation.as_strategy(), headers, key, valid)]
            runs += [_runner(s, headers, key, valid, 5) for s in schema.get_strategies_from_examples(operation)]
            if can_be_wrong:
                runs.append(_runner(operation.as_strategy(GenerationMode.NEGATIVE), headers, key, invalid))
            for run in runs:
                try:
                    run()
                except Exception as exc:  # noqa: BLE001 - collected: every operation and role is tried
                    failures.append(f"{key}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    return valid, invalid


def _enough(sent: tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]) -> None:
    valid, invalid = sent
    assert len({label for label, _ in valid}) >= 10 and len(valid) == len(ROLES) * len({k for k, _ in valid})
    for (label, role), n in valid.items():
        # Hypothesis stops early only when an operation has fewer distinct requests than EXAMPLES (no
        # parameters, no body: one request), and then it has sent every one of them
        assert n >= EXAMPLES or n >= 1 and "{" not in label and "POST" not in label, (label, role, n)
    assert all(invalid[("POST /queries", role)] >= EXAMPLES for role in ROLES)
    assert all(invalid[("GET /audit", role)] >= EXAMPLES for role in ROLES)


@pytest.mark.slow
def test_no_5xx_and_every_response_matches_the_schema_on_sqlite(tmp_path):
    sent = _fuzz(_state(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path))
    _enough(sent)


@pytest.mark.slow
def test_no_5xx_and_every_response_matches_the_schema_on_postgres(tmp_path):
    from support.postgres import postgres_server

    with postgres_server() as url:
        sent = _fuzz(_state(url, tmp_path))
        _limits_and_monitor_hold_on(url)
        create_engine(url).dispose()
    _enough(sent)


def _limits_and_monitor_hold_on(url: str) -> None:
    """The fuzz run swallows the access monitor's write errors (counting never fails a request): check its
    writes, and the shared buckets' conditional update, on this database directly."""
    bucket = SharedTokenBucket(make_engine(url), "pg-check", rate=1e-6, burst=3)
    assert [bucket.take("t") == 0.0 for _ in range(4)] == [True, True, True, False]
    monitor = AccessMonitor(url, AnomalyLimits(distinct_insights=2, bytes=3 * 10**9, overlapping_queries=1))
    for i in range(4):
        monitor.observe("pg-token", nbytes=2 * 10**9, insight_ids=(str(i),), now=3600.0 * 400_000)
    alerts = monitor.flush()  # 8e9 bytes: past PostgreSQL's 32-bit INTEGER
    assert {(a.figure, a.locked) for a in alerts} == {("distinct_insights", True), ("bytes", True)}
    assert monitor.locked("pg-token") is not None
    monitor.record_query("pg-q", "ltv-tiers", {"as_of": "2025-01-01"})
    assert [a.figure for a in monitor.record_query("pg-q", "ltv-tiers", {"as_of": "2025-01-02"})] == [
        "overlapping_queries"]
