"""The coordinator's inspection of replies against the propensity task's release manifest: model weights and
declared metrics of the declared lengths, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from support.fake_grid import set_task_identity

import fedinsight.tasks.propensity.protocol as proto
from fedinsight.core.errors import ReplyContentError
from fedinsight.federation.guard import ReplyGuard, check_reply, spec_for
from fedinsight.federation.manifest import Manifest
from fedinsight.federation.task import hello_release
from fedinsight.models.propensity import build_model, get_weights
from fedinsight.tasks.propensity import TASK
from fedinsight.tasks.propensity.features import FEATURES
from fedinsight.tasks.propensity.options import PropensityOptions

WEIGHTS = get_weights(build_model(len(FEATURES), "logreg", 0))
SHAPES = {k: tuple(v.shape) for k, v in WEIGHTS.items()}
PRIVACY = {"refused": 0, "epsilon": 0.5, "epsilon-job": 0.5, "epsilon-would-be": 0.0, "epsilon-budget": 1.0}


def _reply(**records) -> Message:
    set_task_identity()
    request = Message(RecordDict({}), dst_node_id=7, message_type="train.propensity")
    return Message(RecordDict(records), reply_to=request)


def _arrays(weights=WEIGHTS) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})


def _metrics(**extra) -> MetricRecord:
    return MetricRecord({"num-examples": 120.0, "steps": 10, **PRIVACY, **extra})  # a DP job: no timing


OPTIONS = PropensityOptions(start="2024-01-01", cutoff="2025-01-01", end="2025-07-01")
MANIFEST = Manifest("propensity", tuple(proto.releases(OPTIONS, OPTIONS.plan(), SHAPES, len(FEATURES))))
SPEC = spec_for(MANIFEST, "train")


def test_a_proper_train_reply_passes():
    check_reply(_reply(arrays=_arrays(), metrics=_metrics()), SPEC)
    check_reply(_reply(metrics=MetricRecord({**PRIVACY, "refused": 1})), SPEC)  # a refusal: numbers, no weights


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        (dict(arrays=_arrays(), metrics=_metrics(customer_C000123=1.0)), "metric 'customer_C000123'"),
        (dict(arrays=_arrays(), metrics=_metrics(**{"train-seconds": 3.0})), "metric 'train-seconds'"),  # DP: no time
        (dict(arrays=_arrays(), metrics=_metrics(**{"num-examples": [1.0, 2.0]})), "must be a scalar"),
        (dict(arrays=_arrays(), metrics=_metrics(), extra=ConfigRecord({"customer_id": "C1"})),
         "unexpected record 'extra'"),
        (dict(arrays=_arrays({**WEIGHTS, "scores": np.zeros(500)}), metrics=_metrics()), "extra \\['scores'\\]"),
        (dict(arrays=_arrays({**WEIGHTS, "buy.bias": np.zeros(3)}), metrics=_metrics()), "has shape \\(3,\\)"),
        (dict(arrays=_arrays({**WEIGHTS, "buy.bias": np.array([np.inf])}), metrics=_metrics()), "finite"),
        (dict(arrays=_arrays(), metrics=MetricRecord({"score-list": [0.3] * 40})), "not on the allow-list"),
    ],
)
def test_replies_with_anything_else_are_refused(records, reason):
    with pytest.raises(ReplyContentError, match=reason):
        check_reply(_reply(**records), SPEC)


def test_count_vectors_must_have_the_protocol_length():
    """A vector whose length follows the number of customers (per-customer values) is refused."""
    spec = spec_for(MANIFEST, "evaluate")
    good = {k: 0.0 for k, v in proto.reply_metrics("evaluate", len(FEATURES)).items() if v is None}
    lists = {k: [0.0] * n for k, n in proto.reply_metrics("evaluate", len(FEATURES)).items() if n is not None}
    check_reply(_reply(metrics=MetricRecord({**good, **lists})), spec)
    with pytest.raises(ReplyContentError, match="must be a list of 16"):
        check_reply(_reply(metrics=MetricRecord({**good, **lists, "hist_pos": [1.0] * 37})), spec)
    with pytest.raises(ReplyContentError, match="unexpected record 'arrays'"):
        check_reply(_reply(metrics=MetricRecord(good), arrays=_arrays()), spec)


def test_config_strings_must_match_their_pattern():
    spec = spec_for(Manifest("propensity", (hello_release(TASK),)), "hello")
    check_reply(_reply(partner=ConfigRecord({"partner-id": "bank-eu.1"})), spec)
    check_reply(_reply(partner=ConfigRecord({"partner-id": "零售商 华东"})), spec)  # a folder's own name
    with pytest.raises(ReplyContentError, match="does not match"):
        check_reply(_reply(partner=ConfigRecord({"partner-id": "alice@example.com, bob@example.com"})), spec)
    with pytest.raises(ReplyContentError, match="not on the allow-list"):
        check_reply(_reply(partner=ConfigRecord({"partner-id": "p", "email": "x"})), spec)


def test_guard_drops_and_records():
    guard = ReplyGuard(MANIFEST)
    kept = guard.check([_reply(arrays=_arrays(), metrics=_metrics()),
                        _reply(arrays=_arrays(), metrics=_metrics(ids=[1.0] * 9))], "train")
    assert len(kept) == 1 and guard.inspected == 2 and len(guard.violations) == 1
