"""The recommender's evaluation switches: off costs nothing and sends nothing; per-round evaluation is charged."""

from __future__ import annotations

import pytest
from dp_accounting import dp_event
from support.federations import PARTNER_NAMES, run_in_process

from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks import TASKS  # registers the tasks run_in_process looks up

assert TASKS


@pytest.fixture(scope="module")
def federation(shared_own_federation):
    return shared_own_federation  # the session's own federation (tests/conftest.py): these tests only read it


def test_evaluation_off_sends_no_evaluate_message_and_charges_training_only(federation, tmp_path):
    run = run_in_process("recommend", federation, tmp_path, **{"eval-share": 0.0})
    kinds = {m.metadata.message_type for m in run.grid.sent}
    assert "evaluate.recommend" not in kinds and "train.recommend" in kinds
    assert "federated" not in run.summary["metrics"]
    assert run.summary["privacy"]["evaluation"]["releases"] == 0
    charges = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}").charges()
    assert {c.kind for c in charges} == {"training"} and len(charges) == len(PARTNER_NAMES)


def test_per_round_evaluation_is_opt_in_and_each_one_is_charged(federation, tmp_path):
    run = run_in_process("recommend", federation, tmp_path, **{"eval-every": 1, "rounds": 3})
    evaluations = [m for m in run.grid.sent if m.metadata.message_type == "evaluate.recommend"]
    assert len(evaluations) == 3 * len(PARTNER_NAMES)  # after rounds 1 and 2, and the final one
    assert all(0 <= r["hr@10"] <= 1 for r in run.summary["metrics"]["per_round"])
    privacy = run.summary["privacy"]
    own = PrivacyLedger(f"sqlite:///{tmp_path / 'partners.db'}")
    for partner in PARTNER_NAMES:  # each partner's own gate recorded three evaluation releases within the job
        events = own.job_events(partner, run.summary["job_id"])
        # the popularity release, one DP-SGD event per round, one Gaussian event per evaluation
        assert len(events) == 1 + 3 + 3
        assert sum(isinstance(e, dp_event.GaussianDpEvent) for e in events) == 3
        assert compose_epsilon(events, privacy["delta"]) <= 8.0 + 1e-6
    assert run.summary["metrics"]["federated"]["releases"] == 3
