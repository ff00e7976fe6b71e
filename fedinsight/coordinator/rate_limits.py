"""Token buckets kept in the coordinator database, so every API worker draws from the same bucket.

The API runs several uvicorn workers (``[api] workers``); buckets held in one worker's memory would let a token
make ``workers`` times its allowance, and a restart would refill every bucket. Here a bucket is one row
(``key``, ``tokens``, ``at``) and taking from it is a single conditional ``UPDATE`` that refills and takes in the
same statement, so two workers can never both take the last token: SQLite runs one writer at a time, and
PostgreSQL re-checks the ``WHERE`` on the row it has locked. Times are wall-clock seconds (``time.time()``),
the one clock the workers share.

Rows of buckets that are full again carry no information and are pruned now and then, so a stream of
anonymous callers from many addresses cannot grow the table without bound.

A write per request made the API's p50 latency 8x worse under load (``benchmarks/deploy.py api``, see
docs/reliability.md), so a worker takes a small *lease* — a tenth of the burst — in one write and serves the
next requests of that key from it in memory for up to :data:`LEASE_SECONDS`. Every request served is still
backed by a token the database granted, so all workers together never exceed the limit; what a lease leaves
unused when it expires is simply lost (a worker may refuse slightly early, never late).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Float, String, case, delete, insert, literal, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from fedinsight.core.db import Base, create_tables

PRUNE_EVERY = 500
"""Database takes between two prunes of full buckets (per bucket object)."""
LEASE_FRACTION = 0.1
"""A worker takes this share of the burst at once (at least one request's worth)."""
LEASE_SECONDS = 1.0
"""A lease's unused tokens are given up after this long, so a worker does not sit on tokens another needs."""


class RateBucketRow(Base):
    __tablename__ = "api_rate_buckets"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class SharedTokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up, per key, shared through ``engine``'s database.

    ``name`` keeps buckets apart (``requests``, ``insight-reads``, ``anonymous``) in the one table.
    """

    def __init__(self, engine: Engine, name: str, rate: float, burst: float, *,
                 lease_fraction: float = LEASE_FRACTION) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a bucket needs a positive rate and a burst of at least 1")
        self.engine, self.name = engine, name
        self.rate, self.burst = float(rate), float(burst)
        self.lease = max(1.0, float(int(self.burst * lease_fraction)))
        self._leases: dict[str, tuple[float, float]] = {}  # key -> (tokens left, monotonic expiry)
        self._lock = threading.Lock()
        self._takes = 0
        create_tables(engine, [RateBucketRow.__table__])

    def _level(self, now: float):  # noqa: ANN202 - a SQL expression
        """The bucket's level refilled up to ``now``, capped at ``burst`` (a clock step back refills nothing)."""
        t = RateBucketRow.__table__
        elapsed = case((t.c.at > literal(now), literal(0.0)), else_=literal(now) - t.c.at)
        refilled = t.c.tokens + elapsed * literal(self.rate)
        return case((refilled > literal(self.burst), literal(self.burst)), else_=refilled)

    def take_leased(self, key: str, cost: float = 1.0) -> bool:
        """Take ``cost`` from this worker's lease for ``key`` without touching the database; False if the lease
        cannot cover it (then call :meth:`take`)."""
        with self._lock:
            left, expiry = self._leases.get(key, (0.0, 0.0))
            if left >= cost and expiry > time.monotonic():
                self._leases[key] = (left - cost, expiry)
                return True
            return False

    def take(self, key: str, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if allowed, else the seconds to wait before retrying. Takes a
        lease from the database when the worker's own lease for ``key`` is used up."""
        if now is None:
            if self.take_leased(key, cost):
                return 0.0
            if cost < self.lease and self._take_db(key, self.lease, time.time()) == 0.0:
                with self._lock:
                    if len(self._leases) > 10_000:
                        self._leases.clear()
                    self._leases[key] = (self.lease - cost, time.monotonic() + LEASE_SECONDS)
                return 0.0
        return self._take_db(key, cost, time.time() if now is None else now)

    def _take_db(self, key: str, cost: float, now: float) -> float:
        t = RateBucketRow.__table__
        full_key = f"{self.name}:{key}"[:200]
        self._takes += 1
        if self._takes % PRUNE_EVERY == 0:
            self.prune(now)
        for _ in range(3):  # a concurrent first take of the same key: the loser retries as an update
            with self.engine.begin() as conn:
                level = self._level(now)
                taken = conn.execute(update(t).where(t.c.key == full_key, level >= literal(cost))
                                     .values(tokens=level - literal(cost), at=literal(now)))
                if taken.rowcount == 1:
                    return 0.0
                row = conn.execute(select(t.c.tokens, t.c.at).where(t.c.key == full_key)).first()
                if row is not None:
                    return self._wait(min(self.burst, row.tokens + max(0.0, now - row.at) * self.rate), cost)
                if cost > self.burst:
                    return self._wait(self.burst, cost)
                try:
                    with conn.begin_nested():
                        conn.execute(insert(t).values(key=full_key, tokens=self.burst - cost, at=now))
                    return 0.0
                except IntegrityError:
                    continue
        return 1.0 / self.rate  # three lost races in a row: ask the caller to come back for one token

    def _wait(self, tokens: float, cost: float) -> float:
        if cost > self.burst:  # can never be satisfied: refuse and say when one full bucket is back
            return (self.burst - tokens) / self.rate + 1.0
        return max((cost - tokens) / self.rate, 1e-3)

    def prune(self, now: float | None = None) -> int:
        """Delete this bucket's rows that have refilled completely (they hold no state); the rows deleted."""
        now = time.time() if now is None else now
        t = RateBucketRow.__table__
        with self.engine.begin() as conn:
            gone = conn.execute(delete(t).where(t.c.key.startswith(f"{self.name}:"),
                                                self._level(now) >= literal(self.burst)))
        return int(gone.rowcount or 0)
