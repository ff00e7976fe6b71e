"""Release manifests: every value a partner may send to the coordinator, declared by its task.

A :class:`Release` names one record of one kind of reply (``stats``, ``train``, ``evaluate`` ...), the
keys it may hold and their shapes, and what protects it: a DP mechanism with its sensitivity and the
:class:`~dp_accounting.dp_event.DpEvent` of one release, or ``public`` with the reason it is safe.
Shapes are fixed by the job's public parameters (the model, the catalogue, the queries), never by how
many customers a partner has.

The coordinator enforces the manifest on every reply (:mod:`fedinsight.federation.guard`): anything
undeclared is dropped and reported. The budget path charges the composed cost of the manifest's DP
releases (:meth:`Manifest.events`) before any partner computes, so the two cannot drift apart: a test
runs every task and checks both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError

Shape = tuple[int, ...] | None
"""``None``: a scalar; ``(n,)``: a list of ``n`` numbers (or a 1-d array); ``(n, m)``: a 2-d array."""

PUBLIC = "public"
TEXT = "text"


@dataclass(frozen=True)
class Release:
    """One record a partner may put in one kind of reply."""

    reply: str  # the reply kind: a query phase ("hello", "stats"), "train", "evaluate", "secagg"
    record: str  # the record's name in the reply's RecordDict
    fields: Mapping[str, Shape]  # key -> shape (numbers) for metrics/arrays; for text: key -> None
    mechanism: str  # PUBLIC, or the DP mechanism ("gaussian", "laplace", "dp-sgd", ...)
    what: str = ""  # what it is, in words
    sensitivity: str = ""  # DP: the per-customer bound the noise is calibrated to
    reason: str = ""  # PUBLIC: why it may be sent in clear
    event: dp_event.DpEvent | None = None  # DP: one release's event (what the ledger composes)
    count: int = 1  # how many times one partner makes this release in one job
    kind: str = "metrics"  # "metrics" (MetricRecord), "arrays" (ArrayRecord), "text" (ConfigRecord) or
    # "protocol" (a ConfigRecord of a protocol's own, e.g. SecAgg+: its keys are checked, its values are opaque)
    patterns: Mapping[str, str] = field(default_factory=dict)  # text: key -> regex its value must match

    def __post_init__(self) -> None:
        if self.mechanism == PUBLIC:
            if not self.reason:
                raise ConfigError(f"release {self.reply}/{self.record}: a public value needs its reason")
            if self.event is not None:
                raise ConfigError(f"release {self.reply}/{self.record}: a public value has no DP event")
        elif self.event is None and self.count:
            raise ConfigError(f"release {self.reply}/{self.record}: a DP release needs its DpEvent")
        if self.kind not in ("metrics", "arrays", "text", "protocol"):
            raise ConfigError(f"release {self.reply}/{self.record}: unknown kind {self.kind!r}")
        if self.kind == "text" and set(self.patterns) != set(self.fields):
            raise ConfigError(f"release {self.reply}/{self.record}: every text field needs a pattern")

    @property
    def private(self) -> bool:
        return self.mechanism != PUBLIC


@dataclass(frozen=True)
class Manifest:
    """Every release of one job of one task (shapes and events resolved for that job's options)."""

    task: str
    releases: tuple[Release, ...]

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(r.reply for r in self.releases))

    def for_reply(self, reply: str) -> list[Release]:
        found = [r for r in self.releases if r.reply == reply]
        if not found:
            raise ConfigError(f"task {self.task} declares no '{reply}' reply (declared: {', '.join(self.kinds())})")
        return found

    def events(self) -> list[dp_event.DpEvent]:
        """The DP events of one partner's whole job, in order (each release ``count`` times)."""
        out: list[dp_event.DpEvent] = []
        for r in self.releases:
            if r.private and r.event is not None:
                out += [r.event] * r.count
        return out

    def private(self) -> list[Release]:
        return [r for r in self.releases if r.private]

    def public(self) -> list[Release]:
        return [r for r in self.releases if not r.private]

    def describe(self) -> list[dict[str, object]]:
        """One row per release (docs, ``summary.json``, the report)."""
        return [{"reply": r.reply, "record": r.record,
                 "fields": {k: list(v) if v else None for k, v in r.fields.items()},
                 "mechanism": r.mechanism, "what": r.what, "sensitivity": r.sensitivity, "reason": r.reason,
                 "count": r.count} for r in self.releases]


def merge(task: str, *groups: Iterable[Release]) -> Manifest:
    """A manifest from groups of releases (each task's phases declare theirs)."""
    return Manifest(task, tuple(r for group in groups for r in group))
