"""The gate before every route: 401 before the body is parsed, 413 before a large body is read, rate limits
shared by every worker (kept in the database), every refusal audited and declared in the OpenAPI schema; and an
audit entry the log refuses fails only its own request."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from support.sessions import session_for

from fedinsight.coordinator.api import create_app
from fedinsight.coordinator.api.audit import AuditWriter
from fedinsight.coordinator.rate_limits import RateBucketRow, SharedTokenBucket
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.core.db import make_engine
from fedinsight.core.errors import ConfigError


@pytest.fixture()
def state(tmp_path) -> CoordinatorState:
    return CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)


def _app(state: CoordinatorState, submitted: list, **kwargs) -> TestClient:
    def submit(task, options, who):  # noqa: ANN001, ANN202
        submitted.append(options)
        return state.jobs.create(task=task, federation="fedinsight", run_config=options,
                                 requester=f"token:{who.token_id}")

    return TestClient(create_app(state, submit=submit, **kwargs))


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_unauthenticated_requests_get_401_whatever_their_body(state):
    submitted: list = []
    client = _app(state, submitted, max_body_bytes=2048)
    for body in (b"{not json", b"[]", b"x" * 100_000, b'{"query": "ltv-tiers"}'):
        r = client.post("/queries", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (body[:20], r.text)
    wrong = client.post("/queries", content=b"{not json", headers=_h("fit_0123456789abcdef_wrong"))
    assert wrong.status_code == 401
    assert submitted == []
    assert [e.detail["status"] for e in state.audit.entries(limit=100)] == [401] * 5


def test_a_large_body_is_413_before_it_is_read_or_parsed(state):
    submitted: list = []
    client = _app(state, submitted, max_body_bytes=2048)
    h = {**_h(state.tokens.create("analyst-1", "analyst")[0]), "Content-Type": "application/json"}
    big = b'{"query": "ltv-tiers", "spec": "' + b"x" * 5000 + b'"}'
    assert client.post("/queries", content=big, headers=h).status_code == 413  # Content-Length says so

    def chunks():  # no Content-Length: httpx sends it chunked, the gate stops reading past the limit
        for _ in range(100):
            yield b"x" * 1000

    r = client.post("/queries", content=chunks(), headers=h)
    assert r.status_code == 413 and "at most 2048 bytes" in r.json()["detail"]
    for length in ("\u00b2", "-1", "abc"):  # a superscript two passes str.isdigit() but not int()
        bad = client.get("/budget", headers={**h, "Content-Length": length.encode("latin-1")})
        assert bad.status_code == 400 and "Content-Length" in bad.json()["detail"], length
    assert client.post("/queries", content=b"{not json", headers=h).status_code == 422  # small: parsed as usual
    ok = client.post("/queries", json={"query": "ltv-tiers", "filters": {"as_of": "2025-01-01"}}, headers=h)
    assert ok.status_code == 202 and len(submitted) == 1
    statuses = [e.detail["status"] for e in state.audit.entries(limit=100)]
    assert statuses == [413, 413, 400, 400, 400, 422, 202]


def test_rate_limits_are_shared_by_workers_and_anonymous_callers_are_limited(state):
    token = state.tokens.create("analyst-1", "analyst")[0]
    # two apps on one database stand for two uvicorn workers
    one, two = (_app(state, [], requests_per_second=0.001, burst=3) for _ in range(2))
    codes = [c.get("/budget", headers=_h(token)).status_code for c in (one, two, one, two)]
    assert codes == [200, 200, 200, 429]

    anon_a, anon_b = (_app(state, [], anonymous_requests_per_second=0.001, anonymous_burst=3) for _ in range(2))
    codes = [c.get(path).status_code for c, path in
             ((anon_a, "/health"), (anon_b, "/insights"), (anon_a, "/budget"), (anon_b, "/health"))]
    assert codes == [200, 401, 401, 429]  # failed logins count too: guessing tokens is rate limited
    limited = anon_a.get("/insights", headers=_h("fit_0123456789abcdef_wrong"))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    other = state.tokens.create("analyst-2", "analyst")[0]  # (the first token's bucket is empty: see above)
    assert anon_a.get("/budget", headers=_h(other)).status_code == 200  # a valid token has its own bucket


def test_every_refusal_code_is_declared_in_the_schema(state):
    schema = _app(state, []).get("/openapi.json").json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            declared = set(operation["responses"])
            must = {"400", "413", "429"} | (set() if path == "/health" else {"401"})
            assert must <= declared, (method, path, declared)
    assert {"403", "404", "409", "422", "503"} <= set(schema["paths"]["/queries"]["post"]["responses"])


def test_a_shared_bucket_never_gives_more_than_its_burst_to_concurrent_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    buckets = [SharedTokenBucket(make_engine(url), "requests", rate=1e-6, burst=25) for _ in range(4)]
    granted: list[float] = []

    def worker(bucket: SharedTokenBucket) -> None:
        for _ in range(20):
            granted.append(bucket.take("tok"))

    threads = [threading.Thread(target=worker, args=(b,)) for b in buckets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # each worker leases 2 tokens at a time (a tenth of the burst): a lease left half-used at the end is lost,
    # so 21-25 are granted; never more than the burst
    assert 25 - len(buckets) <= sum(1 for w in granted if w == 0.0) <= 25 and len(granted) == 80


def test_a_lease_serves_requests_without_the_database_and_never_more_than_granted(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    one, two = (SharedTokenBucket(engine, "requests", rate=1e-6, burst=40) for _ in range(2))
    assert one.lease == 4
    def stored() -> float:
        with engine.connect() as conn:
            return float(conn.execute(select(RateBucketRow.tokens)).scalar_one())

    assert [one.take("tok") for _ in range(4)] == [0.0] * 4 and stored() == pytest.approx(36)  # one write of 4
    assert [two.take("tok") for _ in range(36)] == [0.0] * 36  # the other worker gets what is left
    assert one.take("tok") > 0 and two.take("tok") > 0  # 40 in all, across both


def test_a_shared_bucket_refills_at_its_rate_and_prunes_full_rows(tmp_path):
    bucket = SharedTokenBucket(make_engine(f"sqlite:///{tmp_path / 'l.db'}"), "reads", rate=2.0, burst=4)
    assert [bucket.take("k", now=100.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take("k", now=100.0) == pytest.approx(0.5)  # one token comes back in half a second
    assert bucket.take("k", now=100.5) == 0.0
    assert bucket.take("k", cost=10, now=100.5) == pytest.approx(4 / 2.0 + 1.0)  # never possible: full + 1 s
    assert bucket.take("k", now=90.0) > 0  # the clock stepped back: nothing refilled
    assert bucket.prune(now=101.0) == 0 and bucket.prune(now=103.0) == 1


def test_an_entry_the_log_refuses_fails_only_its_own_request(state):
    writer = AuditWriter(state.audit)

    async def three() -> list:
        entries = [{"actor": "a", "action": "GET /budget", "detail": {"status": 200}},
                   {"actor": "b", "action": "GET /budget", "epsilon": float("inf")},  # refused by the log
                   {"actor": "c", "action": "GET /budget", "detail": {"status": 200}}]
        return await asyncio.gather(*(writer.append(e) for e in entries), return_exceptions=True)

    results = asyncio.run(three())
    assert results[0] is None and results[2] is None and isinstance(results[1], ConfigError)
    assert [e.actor for e in state.audit.entries()] == ["a", "c"] and state.audit.verify().ok


def test_a_role_not_allowed_an_operation_gets_403_before_its_body_is_parsed(state):
    submitted: list = []
    client = _app(state, submitted)
    auditor = session_for(state, state.tokens.create("auditor-1", "auditor")[0])
    analyst = state.tokens.create("analyst-1", "analyst")[0]
    json_h = {"Content-Type": "application/json"}
    for body in (b"{not json", b"[]", b'{"epsilon": "x"}', b'{"query": "ltv-tiers"}'):
        r = client.post("/queries", content=body, headers={**_h(auditor), **json_h})
        assert r.status_code == 403 and "may not queries:submit" in r.json()["detail"], (body, r.text)
    assert client.get("/insights?limit=notanumber", headers=_h(auditor)).status_code == 403  # query params too
    assert client.get("/audit?limit=notanumber", headers=_h(analyst)).status_code == 403
    # an allowed role still gets the body checked, and an unknown route is still a 404, not a 403
    assert client.post("/queries", content=b"{not json", headers={**_h(analyst), **json_h}).status_code == 422
    assert client.get("/audit?limit=notanumber", headers=_h(auditor)).status_code == 422
    assert client.get("/no-such-route", headers=_h(auditor)).status_code == 404
    assert submitted == []
    refused = [e for e in state.audit.entries(limit=100) if e.detail["status"] == 403]
    assert len(refused) == 6 and {e.outcome for e in refused} == {"denied"}


def test_the_gate_reads_the_database_off_the_event_loop(state):
    """Token lookup, session check and lock check run in the thread pool (no running event loop in their thread);
    a remembered token is served from memory without any lookup."""
    import asyncio

    client = _app(state, [])
    ctx = client.app.state.api  # type: ignore[attr-defined]
    calls: list[tuple[str, bool]] = []

    def watched(name: str, fn):  # noqa: ANN001, ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            try:
                asyncio.get_running_loop()
                on_loop = True
            except RuntimeError:
                on_loop = False
            calls.append((name, on_loop))
            return fn(*args, **kwargs)
        return call

    ctx.tokens.tokens.authenticate = watched("token", ctx.tokens.tokens.authenticate)
    ctx.mfa.session_token_id = watched("session", ctx.mfa.session_token_id)
    ctx.monitor.locked = watched("lock", ctx.monitor.locked)
    analyst = state.tokens.create("analyst-1", "analyst")[0]
    auditor = session_for(state, state.tokens.create("auditor-1", "auditor")[0])
    assert client.get("/budget", headers=_h(analyst)).status_code == 200
    assert client.get("/budget", headers=_h(analyst)).status_code == 200  # remembered: no second lookup
    assert client.get("/audit", headers=_h(auditor)).status_code == 200
    assert sorted(calls) == [("lock", False), ("lock", False), ("session", False), ("token", False)]
