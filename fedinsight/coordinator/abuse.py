"""Abuse limits for the insights API: request rate, bulk pulls, and query patterns that probe individuals.

Differential privacy bounds what any set of releases reveals, but an analyst can still try to spend
budget in the most revealing way: ask the same question many times with one filter nudged (``zip =
10001``, ``10002``, ...) until a small group — ideally one person — is isolated, or scrape every insight
at machine speed. These checks refuse such patterns *before* a job is started, and every refusal is
written to the audit log by the API.

* :class:`TokenBucket` — a token bucket in one process's memory (the API itself uses
  :class:`~fedinsight.coordinator.rate_limits.SharedTokenBucket`, the same arithmetic kept in the database so
  every worker draws from one bucket): per-token request rate with a burst allowance (HTTP 429 when empty);
* bulk pulls — a second bucket per token counts insight *records* read (a list of 100 costs 100);
* :class:`ProbeDetector` — keeps each token's catalogue queries in the database (so a restart or a second
  API worker does not reset it) and refuses a query when the token has, inside the window, already asked
  the same catalogue query with all filters equal but one, for ``max_variants`` different values of
  that one filter.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedinsight.core.db import Base, create_tables, make_engine


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up. Thread-safe."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self._level: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` tokens for ``key``: 0.0 if allowed, else the seconds to wait before retrying."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._level.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if cost > self.burst:  # can never be satisfied: refuse and say when one full bucket is back
                self._level[key] = (tokens, now)
                return (self.burst - tokens) / self.rate + 1.0
            if tokens >= cost:
                self._level[key] = (tokens - cost, now)
                return 0.0
            self._level[key] = (tokens, now)
            return (cost - tokens) / self.rate


class QueryHistoryRow(Base):
    __tablename__ = "api_query_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(String(32), index=True)
    query: Mapped[str] = mapped_column(String(128))
    filters: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)


@dataclass(frozen=True)
class ProbeVerdict:
    """Whether a query is refused, and why (the filter being varied and the values seen)."""

    refused: bool
    varied_filter: str | None = None
    values_seen: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        if not self.refused:
            return ""
        shown = ", ".join(self.values_seen[:10])
        return (f"refused: this looks like probing for individuals — the same query was already asked with only "
                f"'{self.varied_filter}' changed ({len(self.values_seen)} values: {shown}). Ask with a broader "
                f"filter instead.")


def _norm(filters: dict[str, Any]) -> dict[str, str]:
    return {str(k): json.dumps(v, sort_keys=True) for k, v in filters.items()}


class ProbeDetector:
    """Refuse near-identical catalogue queries that differ in one filter (see the module docstring)."""

    def __init__(self, url: str | None, *, window_s: float = 3600.0, max_variants: int = 3) -> None:
        self.window = timedelta(seconds=window_s)
        self.max_variants = max_variants
        self.engine = make_engine(url)
        create_tables(self.engine, [QueryHistoryRow.__table__])

    def check(self, token_id: str, query: str, filters: dict[str, Any], *, record: bool = True) -> ProbeVerdict:
        """Judge a query; allowed queries are recorded (refused ones are not, so they do not compound)."""
        new = _norm(filters)
        since = _utcnow() - self.window
        with Session(self.engine) as session:
            rows = list(session.scalars(select(QueryHistoryRow.filters).where(
                QueryHistoryRow.token_id == token_id, QueryHistoryRow.query == query, QueryHistoryRow.at >= since)))
        seen: dict[str, set[str]] = {}
        for raw in rows:
            old = _norm(json.loads(raw))
            if old.keys() != new.keys():
                continue
            diff = [k for k in new if new[k] != old[k]]
            if len(diff) == 1:
                seen.setdefault(diff[0], set()).add(old[diff[0]])
        for key, values in sorted(seen.items()):
            if len(values) >= self.max_variants:
                return ProbeVerdict(True, key, tuple(sorted(values | {new[key]})))
        if record:
            with Session(self.engine) as session, session.begin():
                session.add(QueryHistoryRow(token_id=token_id, query=query,
                                            filters=json.dumps(filters, sort_keys=True), at=_utcnow()))
        return ProbeVerdict(False)
