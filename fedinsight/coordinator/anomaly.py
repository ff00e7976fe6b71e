"""Anomaly detection on API access: each token's hourly requests, insight records read, distinct insights read
and bytes served, compared with a floor and with the token's own baseline; and overlapping query specs (the
same catalogue query or spec asked again, or with one filter changed), the raw material of differencing.

Why on top of the rate limits and the probe detector: those refuse one request at a time; a patient scraper
stays under every per-second limit, and an analyst who repeats a query (averaging its noise away) or nudges
it is refused only once the sweep is obvious. Here a figure above its threshold writes an alert to the audit
log (``anomaly.alert``, listed by ``fedinsight audit alerts``), once per token, figure and hour; a figure at
``lock_factor`` times its threshold locks the token (403 on every request) until an admin runs
``fedinsight tokens unlock``.

A figure's threshold is ``max(floor, baseline_factor x the token's average hour over the past week)``: a
token that always reads a lot is not flagged for its usual day, a token that suddenly reads 5x its
habit is. Overlapping queries have no baseline: repeating one question is never a habit to learn.

Counting is cheap: each worker adds requests up in memory and writes them to the database every
``flush_seconds`` (one row per token and hour, shared by all workers), then judges the tokens it saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime, Float, Integer, String, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine

FIGURES = ("requests", "records", "distinct_insights", "bytes")
BASELINE_HOURS = 7 * 24


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class AnomalyLimits:
    """Floors per token and hour (``overlapping_queries``: per day), and how far above them an alert locks."""

    requests: int = 3000
    records: int = 5000
    distinct_insights: int = 300
    bytes: int = 50_000_000
    overlapping_queries: int = 8
    baseline_factor: float = 5.0
    lock_factor: float = 2.0


class AccessHourRow(Base):
    __tablename__ = "api_access_hours"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    # 64-bit: PostgreSQL's INTEGER stops at 2.1e9, a busy hour's bytes do not
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    records: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class InsightReadRow(Base):
    __tablename__ = "api_insight_reads"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    insight_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class QueryLogRow(Base):
    __tablename__ = "api_query_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(String(32), index=True)
    query: Mapped[str] = mapped_column(String(128))
    filters: Mapped[str] = mapped_column(String(4000))
    at: Mapped[datetime] = mapped_column(DateTime, index=True)


class AlertRow(Base):
    __tablename__ = "api_alerts"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    figure: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    locked: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(DateTime)


class LockRow(Base):
    __tablename__ = "api_token_locks"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(512))
    locked_at: Mapped[datetime] = mapped_column(DateTime)


@dataclass(frozen=True)
class Alert:
    """One figure of one token above its threshold in one hour (``locked``: it passed the lock level too)."""

    token_id: str
    figure: str
    hour: int
    value: float
    threshold: float
    locked: bool
    at: datetime = field(default_factory=_utcnow)

    @property
    def words(self) -> str:
        what = {"requests": "requests", "records": "insight records read", "distinct_insights":
                "different insights read", "bytes": "bytes served",
                "overlapping_queries": "repeated or near-identical queries (differencing pattern)"}[self.figure]
        return (f"{self.value:.0f} {what} (usual ceiling {self.threshold:.0f})"
                + ("; token locked until an admin unlocks it" if self.locked else ""))

    def as_dict(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "figure": self.figure, "hour": self.hour, "value": self.value,
                "threshold": self.threshold, "locked": self.locked, "at": self.at.isoformat() + "Z",
                "words": self.words}


def _near(a: dict[str, str], b: dict[str, str]) -> bool:
    """Equal, or different in exactly one filter (same filter names)."""
    return a.keys() == b.keys() and sum(a[k] != b[k] for k in a) <= 1


class AccessMonitor:
    """Counts each token's access, judges it against its baseline, raises alerts and locks (module docstring).

    ``report``: called with each new :class:`Alert` (the API appends it to the audit log).
    """

    def __init__(self, url: str | None, limits: AnomalyLimits | None = None, *, flush_seconds: float = 2.0,
                 report: Any = None) -> None:
        self.limits = limits or AnomalyLimits()
        self.flush_seconds = flush_seconds
        self.report = report
        self.engine = make_engine(url)
        create_tables(self.engine, [AccessHourRow.__table__, InsightReadRow.__table__, QueryLogRow.__table__,
                                    AlertRow.__table__, LockRow.__table__])
        self._pending: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        self._reads: set[tuple[str, int, str]] = set()
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._locks: dict[str, tuple[str | None, float]] = {}

    # --- counting ------------------------------------------------------------------------------------------
    def observe(self, token_id: str, *, records: int = 0, nbytes: int = 0, insight_ids: tuple[str, ...] = (),
                now: float | None = None) -> bool:
        """Count one request; True when it is time to :meth:`flush` (the caller does, off the event loop)."""
        hour = int((time.time() if now is None else now) // 3600)
        with self._lock:
            counts = self._pending[(token_id, hour)]
            counts[0] += 1
            counts[1] += max(records, 0)
            counts[2] += max(nbytes, 0)
            self._reads.update((token_id, hour, str(i)[:32]) for i in insight_ids)
            return time.monotonic() - self._last_flush >= self.flush_seconds

    def flush(self, now: float | None = None) -> list[Alert]:
        """Write the counts gathered since the last flush, then judge the tokens they belong to."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(lambda: [0, 0, 0])
            reads, self._reads = self._reads, set()
            self._last_flush = time.monotonic()
        if not pending and not reads:
            return []
        hours, reads_t = AccessHourRow.__table__, InsightReadRow.__table__
        with self.engine.begin() as conn:
            for (token_id, hour), (n, records, nbytes) in pending.items():
                where = (hours.c.token_id == token_id) & (hours.c.hour == hour)
                done = conn.execute(update(hours).where(where).values(
                    requests=hours.c.requests + n, records=hours.c.records + records, bytes=hours.c.bytes + nbytes))
                if done.rowcount == 0:
                    try:
                        with conn.begin_nested():
                            conn.execute(insert(hours).values(token_id=token_id, hour=hour, requests=n,
                                                              records=records, bytes=nbytes))
                    except IntegrityError:  # another worker inserted the row first
                        conn.execute(update(hours).where(where).values(
                            requests=hours.c.requests + n, records=hours.c.records + records,
                            bytes=hours.c.bytes + nbytes))
            for token_id, hour, insight_id in reads:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(reads_t).values(token_id=token_id, hour=hour, insight_id=insight_id))
                except IntegrityError:
                    pass  # read before in this hour: distinct means once
        alerts: list[Alert] = []
        for token_id, hour in sorted({k for k in pending} | {(t, h) for t, h, _ in reads}):
            alerts += self._judge(token_id, hour)
        return alerts

    def record_query(self, token_id: str, query: str, filters: dict[str, Any]) -> list[Alert]:
        """Log a submitted query and judge the token's overlapping queries of the past day."""
        norm = {str(k): json.dumps(v, sort_keys=True) for k, v in filters.items()}
        since = _utcnow() - timedelta(days=1)
        log = QueryLogRow.__table__
        with self.engine.begin() as conn:
            earlier = conn.execute(select(log.c.filters).where(log.c.token_id == token_id, log.c.query == query[:128],
                                                               log.c.at >= since)).scalars().all()
            conn.execute(insert(log).values(token_id=token_id, query=query[:128],
                                            filters=json.dumps(norm, sort_keys=True)[:4000], at=_utcnow()))
        overlapping = 1 + sum(_near(norm, json.loads(f)) for f in earlier)
        if overlapping <= 1:
            return []
        return self._raise(token_id, "overlapping_queries", int(time.time() // 3600), overlapping,
                           float(self.limits.overlapping_queries))

    # --- judging -------------------------------------------------------------------------------------------
    def _judge(self, token_id: str, hour: int) -> list[Alert]:
        hours, reads = AccessHourRow.__table__, InsightReadRow.__table__
        with self.engine.connect() as conn:
            now = conn.execute(select(hours.c.requests, hours.c.records, hours.c.bytes).where(
                hours.c.token_id == token_id, hours.c.hour == hour)).first()
            past = conn.execute(select(func.sum(hours.c.requests), func.sum(hours.c.records), func.sum(hours.c.bytes))
                                .where(hours.c.token_id == token_id, hours.c.hour < hour,
                                       hours.c.hour >= hour - BASELINE_HOURS)).first()
            distinct_now = conn.execute(select(func.count()).select_from(reads).where(
                reads.c.token_id == token_id, reads.c.hour == hour)).scalar() or 0
            distinct_past = conn.execute(select(func.count()).select_from(reads).where(
                reads.c.token_id == token_id, reads.c.hour < hour, reads.c.hour >= hour - BASELINE_HOURS)).scalar() or 0
        current = {"requests": now.requests if now else 0, "records": now.records if now else 0,
                   "bytes": now.bytes if now else 0, "distinct_insights": distinct_now}
        totals = {"requests": past[0] or 0, "records": past[1] or 0, "bytes": past[2] or 0,
                  "distinct_insights": distinct_past}
        alerts: list[Alert] = []
        for figure in FIGURES:
            threshold = max(float(getattr(self.limits, figure)),
                            self.limits.baseline_factor * totals[figure] / BASELINE_HOURS)
            if current[figure] > threshold:
                alerts += self._raise(token_id, figure, hour, float(current[figure]), threshold)
        return alerts

    def _raise(self, token_id: str, figure: str, hour: int, value: float, threshold: float) -> list[Alert]:
        """An alert when ``value`` passes ``threshold`` (once per token, figure and hour; again when it locks)."""
        if value <= threshold:
            return []
        lock = value >= self.limits.lock_factor * threshold
        alert = Alert(token_id, figure, hour, value, threshold, lock)
        try:
            if not self._store_alert(alert):
                return []
        except IntegrityError:  # another worker raised the same alert (or lock) a moment ago
            return []
        with self._lock:
            self._locks.pop(token_id, None)
        if self.report is not None:
            self.report(alert)
        return [alert]

    def _store_alert(self, alert: Alert) -> bool:
        """Record ``alert`` (and its lock); False if it was recorded already."""
        alerts_t = AlertRow.__table__
        token_id, figure, hour, value, threshold, lock = (alert.token_id, alert.figure, alert.hour, alert.value,
                                                          alert.threshold, alert.locked)
        with self.engine.begin() as conn:
            seen = conn.execute(select(alerts_t.c.locked).where(alerts_t.c.token_id == token_id,
                                                                alerts_t.c.figure == figure,
                                                                alerts_t.c.hour == hour)).first()
            if seen is not None and (seen.locked or not lock):
                return False
            if seen is None:
                conn.execute(insert(alerts_t).values(token_id=token_id, figure=figure, hour=hour, value=value,
                                                     threshold=threshold, locked=int(lock), at=alert.at))
            else:
                conn.execute(update(alerts_t).where(alerts_t.c.token_id == token_id, alerts_t.c.figure == figure,
                                                    alerts_t.c.hour == hour).values(value=value, locked=1))
            if lock and conn.execute(select(LockRow.token_id).where(LockRow.token_id == token_id)).first() is None:
                conn.execute(insert(LockRow.__table__).values(token_id=token_id, reason=alert.words[:512],
                                                              locked_at=alert.at))
        return True

    # --- locks ---------------------------------------------------------------------------------------------
    def remembered_lock(self, token_id: str) -> tuple[bool, str | None]:
        """(known, reason) from memory only: ``known`` is False when :meth:`locked` must ask the database (which
        the API gate then does in the thread pool, never on the event loop)."""
        with self._lock:
            hit = self._locks.get(token_id)
        if hit is not None and hit[1] > time.monotonic():
            return True, hit[0]
        return False, None

    def locked(self, token_id: str) -> str | None:
        """Why the token is locked, or None; remembered for a second (an unlock takes effect within it)."""
        now = time.monotonic()
        known, reason = self.remembered_lock(token_id)
        if known:
            return reason
        with self.engine.connect() as conn:
            row = conn.execute(select(LockRow.reason).where(LockRow.token_id == token_id)).first()
        reason = row.reason if row else None
        with self._lock:
            if len(self._locks) > 10_000:
                self._locks.clear()
            self._locks[token_id] = (reason, now + 1.0)
        return reason

    def unlock(self, token_id: str) -> bool:
        """Lift a lock (True if there was one)."""
        with self.engine.begin() as conn:
            gone = conn.execute(LockRow.__table__.delete().where(LockRow.token_id == token_id)).rowcount
        with self._lock:
            self._locks.pop(token_id, None)
        return bool(gone)

    def alerts(self, limit: int = 100) -> list[Alert]:
        """The newest alerts first."""
        t = AlertRow.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.at.desc()).limit(limit)).all()
        return [Alert(r.token_id, r.figure, r.hour, r.value, r.threshold, bool(r.locked), r.at) for r in rows]
