"""Inspect every partner reply before the coordinator uses it: only what the task's manifest declares.

Why: the promise to partners is that nothing row-level leaves their premises -- only model updates and
aggregates. A bug or a careless change on the client side (a customer id in a metric name, a vector of
per-customer scores) would break that promise silently. The coordinator therefore checks each reply
against a :class:`ReplySpec` and discards what does not fit:

- only the named records may be present (``arrays``, ``metrics``, ``partner``...);
- an ArrayRecord must hold exactly the global model's keys, with the same shapes, as floats;
- a MetricRecord may hold only allow-listed keys, each a scalar or a list of the *protocol's* fixed
  length (so its size cannot depend on how many customers a partner has);
- a ConfigRecord may hold only allow-listed string keys whose values match a pattern.

The allow-lists come from the task's release manifest (:mod:`fedinsight.federation.manifest`):
:class:`ReplyGuard` turns the releases declared for a kind of reply into a :class:`ReplySpec`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord

from fedinsight.core.errors import ReplyContentError
from fedinsight.federation.manifest import Manifest

ANY = "<any>"


@dataclass(frozen=True)
class ReplySpec:
    """What one kind of reply may contain."""

    kind: str
    arrays: dict[str, tuple[int, ...]] | None = None  # expected weight keys -> shapes; None = no weights allowed
    arrays_required: bool = False
    metrics: dict[str, int | None] = field(default_factory=dict)  # key -> None (scalar) or list length
    config: dict[str, str] = field(default_factory=dict)  # key -> regex the string must match
    records: tuple[str, ...] = ("arrays", "metrics")


def _fail(msg: Message, spec: ReplySpec, what: str) -> ReplyContentError:
    src = msg.metadata.src_node_id if msg.metadata is not None else "?"
    return ReplyContentError(f"{spec.kind} reply from node {src} discarded: {what}")


def check_reply(msg: Message, spec: ReplySpec) -> None:
    """Raise :class:`ReplyContentError` unless ``msg`` holds only what ``spec`` allows."""
    if msg.has_error():
        raise _fail(msg, spec, f"partner error: {msg.error.reason}")
    content = msg.content
    for name, record in content.items():
        if name not in spec.records:
            raise _fail(msg, spec, f"unexpected record '{name}' (allowed: {', '.join(spec.records)})")
        if isinstance(record, ArrayRecord):
            _check_arrays(msg, spec, name, record)
        elif isinstance(record, MetricRecord):
            _check_metrics(msg, spec, name, record)
        elif isinstance(record, ConfigRecord):
            _check_config(msg, spec, name, record)
        else:  # pragma: no cover - RecordDict only holds the three record types
            raise _fail(msg, spec, f"record '{name}' of unexpected type {type(record).__name__}")
    if spec.arrays_required and not content.array_records:
        raise _fail(msg, spec, "no model weights in a reply that must carry them")


def _check_arrays(msg: Message, spec: ReplySpec, name: str, record: ArrayRecord) -> None:
    if spec.arrays is None:
        raise _fail(msg, spec, f"record '{name}' carries arrays; this reply may not")
    if set(record.keys()) != set(spec.arrays):
        extra = sorted(set(record.keys()) - set(spec.arrays))
        missing = sorted(set(spec.arrays) - set(record.keys()))
        raise _fail(msg, spec, f"weights differ from the global model's (extra {extra}, missing {missing})")
    for key, array in record.items():
        values = array.numpy()
        if tuple(values.shape) != tuple(spec.arrays[key]):
            raise _fail(msg, spec, f"weight '{key}' has shape {values.shape}, expected {spec.arrays[key]}")
        if values.dtype.kind != "f" or not np.all(np.isfinite(values)):
            raise _fail(msg, spec, f"weight '{key}' must be finite floats")


def _check_metrics(msg: Message, spec: ReplySpec, name: str, record: MetricRecord) -> None:
    for key, value in record.items():
        if key not in spec.metrics:
            raise _fail(msg, spec, f"metric '{key}' is not on the allow-list")
        length = spec.metrics[key]
        if length is None:
            if isinstance(value, list):
                raise _fail(msg, spec, f"metric '{key}' must be a scalar, got a list of {len(value)}")
        elif not isinstance(value, list) or len(value) != length:
            got = f"a list of {len(value)}" if isinstance(value, list) else "a scalar"
            raise _fail(msg, spec, f"metric '{key}' must be a list of {length} values, got {got}")
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and math.isinf(v) for v in values):
            raise _fail(msg, spec, f"metric '{key}' is infinite")


def _check_config(msg: Message, spec: ReplySpec, name: str, record: ConfigRecord) -> None:
    for key, value in record.items():
        pattern = spec.config.get(key)
        if pattern is None:
            raise _fail(msg, spec, f"config entry '{key}' is not on the allow-list")
        if pattern == ANY:  # a protocol's own record (SecAgg+): keys checked, values are the protocol's
            continue
        if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
            raise _fail(msg, spec, f"config entry '{key}' does not match {pattern}")


@dataclass
class GuardLog:
    """Counts of inspected replies and the violations found (reported in summary.json)."""

    inspected: int = 0
    violations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # partners that replied with an error

    def filter(self, replies: list[Message], spec: ReplySpec) -> list[Message]:
        """The replies that pass ``spec``; the others are recorded and dropped."""
        kept = []
        for msg in replies:
            self.inspected += 1
            if msg.has_error():
                self.failures.append(f"{spec.kind}: node {msg.metadata.src_node_id} failed: {msg.error.reason}")
                continue
            try:
                check_reply(msg, spec)
            except ReplyContentError as exc:
                self.violations.append(str(exc))
                continue
            kept.append(msg)
        return kept


def spec_for(manifest: Manifest, reply: str) -> ReplySpec:
    """The allow-list of one kind of reply: the union of the records its releases declare."""
    arrays: dict[str, tuple[int, ...]] | None = None
    metrics: dict[str, int | None] = {}
    config: dict[str, str] = {}
    records: list[str] = []
    for r in manifest.for_reply(reply):
        records.append(r.record)
        if r.kind == "arrays":
            arrays = {**(arrays or {}), **{k: tuple(v or ()) for k, v in r.fields.items()}}  # {}: must be empty
        elif r.kind == "text":
            config.update(r.patterns)
        elif r.kind == "protocol":
            config.update(dict.fromkeys(r.fields, ANY))
        else:
            for key, shape in r.fields.items():
                if shape is not None and len(shape) != 1:
                    raise ReplyContentError(f"metric '{key}' of {manifest.task}/{reply} must be a scalar or a list")
                metrics[key] = None if shape is None else int(shape[0])
    return ReplySpec(reply, arrays=arrays, metrics=metrics, config=config, records=tuple(dict.fromkeys(records)))


class ReplyGuard(GuardLog):
    """A job's reply inspector: every reply is held against the manifest's releases for its kind."""

    def __init__(self, manifest: Manifest) -> None:
        super().__init__()
        self.manifest = manifest
        self._specs: dict[str, ReplySpec] = {}

    def replace(self, manifest: Manifest) -> None:
        """Hold later replies against ``manifest`` (a plan that learnt its shapes from an earlier DP release)."""
        self.manifest = manifest
        self._specs.clear()

    def spec(self, reply: str) -> ReplySpec:
        if reply not in self._specs:
            self._specs[reply] = spec_for(self.manifest, reply)
        return self._specs[reply]

    def check(self, replies: list[Message], reply: str) -> list[Message]:
        """The replies of kind ``reply`` that hold only declared values; the others recorded and dropped."""
        return self.filter(list(replies), self.spec(reply))

    def summary(self) -> dict[str, object]:
        return {"replies_inspected": self.inspected, "violations": list(self.violations),
                "failures": list(self.failures)}
