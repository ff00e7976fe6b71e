"""Distributed-noise insights through the real partner ClientApp and Flower's SecAgg+ workflow, in process.

Three small synthetic partners: the coordinator sees only masked vectors, the released numbers sit within a few
noise sds of the exact contribution-bounded aggregates of the partners' raw data, that sd is about 1/sqrt(3) of
the local mode's, the ledger charges what local mode charges, and a sum that lost a partner is never unmasked.
"""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
from flwr.app import Message
from support.fake_grid import InProcessGrid
from support.insights import run_task

from fedinsight.core.errors import SecureAggregationError
from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.federation.store import InsightStore
from fedinsight.privacy.allocation import batch_event
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.insights.catalogue import default_batch
from fedinsight.tasks.insights.results import paired_estimates
from fedinsight.tasks.insights.server import price_batch
from fedinsight.tasks.insights.simulate import release_in_process

PARTNERS = 3
QUERIES = ["segment-profile-rfm", "funnel-by-channel", "ltv-tiers"]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from fedinsight.data.federation import write_partner_folder
    from fedinsight.partner.policy_init import init_federation

    frames, _ = generate_partner_frames(SynthConfig(customers=9_000, partners=PARTNERS, seed=11))
    partners = {p: PartnerData(p, **t) for p, t in frames.items()}
    root = tmp_path_factory.mktemp("dist-partners")
    write_partner_folder(partners, root)
    init_federation(root)
    return partners, {k: str(root / pid) for k, pid in enumerate(partners)}


class SecAggGrid(InProcessGrid):
    """The partners' real ClientApp in process; ``victim`` goes silent when asked for its masked vector."""

    def __init__(self, folders: dict[int, str], victim: int | None = None) -> None:
        from fedinsight.partner.clientapp import app

        super().__init__(app, len(folders), node_config=lambda k: {"data-path": folders[k],
                                                                    "partner-id": f"partner-{k}"})
        self.victim = None if victim is None else 100 + victim
        self.run = SimpleNamespace(run_id=1)  # what Flower's legacy workflow reads of a Grid besides messaging
        self.unmask_replies: list[Message] = []

    def send_and_receive(self, messages, *, timeout=None):
        from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

        messages = list(messages)
        stages = {m.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE) for m in messages
                  if m.metadata.message_type == "train" and RECORD_KEY_CONFIGS in m.content.config_records}
        if Stage.COLLECT_MASKED_VECTORS in stages and self.victim is not None:
            messages = [m for m in messages if m.metadata.dst_node_id != self.victim]
        # a real transport serialises each message; in process, partners must not share (and mutate) records
        messages = [Message(copy.deepcopy(m.content), dst_node_id=m.metadata.dst_node_id,
                            message_type=m.metadata.message_type, group_id=m.metadata.group_id) for m in messages]
        replies = list(super().send_and_receive(messages, timeout=timeout))
        if Stage.UNMASK in stages:
            self.unmask_replies.extend(replies)
        return replies


def _config(tmp_path, batch, **extra) -> dict:
    return {"task": "insights", "batch": batch.model_dump_json(), "partners": PARTNERS, "budget": 5.0,
            "ledger-url": f"sqlite:///{tmp_path / 'ledger.db'}", "out-dir": str(tmp_path / "out"),
            "noise-model": "distributed-secagg", "max-customers": 20_000, **extra}


@pytest.mark.slow
def test_distributed_noise_releases_the_sum_with_a_sqrt_k_smaller_sd(federation, tmp_path):
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

    partners, folders = federation
    batch = default_batch("synthetic", epsilon=1.0, only=QUERIES)
    grid = SecAggGrid(folders)
    rc = _config(tmp_path, batch)
    run_task(grid, rc)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    privacy = summary["privacy"]

    # the coordinator saw masked vectors only, declared in the manifest; no partner answered "compute"
    assert not any(m.content.config_records.get("config", {}).get("phase") == "compute" for m in grid.sent)
    masked = [r for r in grid.replies if r.metadata.message_type == "train" and not r.has_error()
              and Key.MASKED_PARAMETERS in r.content.config_records[RECORD_KEY_CONFIGS]]
    assert len(masked) == PARTNERS and all(len(rec) == 0 for r in masked for rec in r.content.array_records.values())
    releases = {(r["reply"], r["mechanism"]) for r in privacy["releases"]}
    assert ("secagg", "discrete-gaussian+secagg") in releases and not any(r == "compute" for r, _ in releases)

    # trust model and noise model recorded: summary, insights.json, the store
    assert privacy["noise_model"] == "distributed-secagg" and "do not collude" in privacy["trust_model"]
    secagg = privacy["secagg"]
    assert secagg["contributors"] == PARTNERS and secagg["noise_shares"] == PARTNERS
    document = json.loads((tmp_path / "out" / "insights.json").read_text())
    assert document["noise_model"] == "distributed-secagg"
    assert {s.insight["noise_model"] for s in InsightStore(rc["ledger-url"]).list()} == {"distributed-secagg"}
    assert {s.summary()["noise_model"] for s in InsightStore(rc["ledger-url"]).list()} == {"distributed-secagg"}
    from fedinsight.tasks.insights.report import insights_sections

    html = insights_sections(document)[1][0].html()
    assert "summed under SecAgg+" in html and "Trust model: distributed-secagg" in html
    assert html.count("distributed-secagg noise") == len(QUERIES)

    # the sum's noise sd is about 1/sqrt(K) of local mode's (times the grid's rounding inflation, here < 1 %)
    for name, q in secagg["queries"].items():
        assert q["noise_sd"] / q["local_noise_sd"] == pytest.approx(q["inflation"] / math.sqrt(PARTNERS), rel=1e-6)
        assert 1.0 <= q["inflation"] < 1.01, name

    # released numbers are within a few noise sds of the exact aggregates of the partners' raw data
    exact = release_in_process(partners, batch, exact=True)
    direct = within = 0
    for released, reference in zip(document["insights"], exact, strict=True):
        for path, est, ref in paired_estimates(released["result"], reference["result"]):
            if "sampling_sd" in est:
                continue
            z = abs(est["value"] - ref["value"]) / max(est["noise_sd"], 1e-12)
            within += z <= 3
            direct += 1
            if path.endswith("customers") or ".counts." in path:  # direct counts: the summed noise itself
                assert z <= 6, (released["name"], path, est, ref)
    assert direct > 40 and within / direct >= 0.9

    # each partner's ledger: one charge of exactly local mode's events, named by the mechanism and trust model
    local_event = batch_event(price_batch(batch))
    ledger = PrivacyLedger(rc["ledger-url"])
    charges = ledger.charges()
    assert len(charges) == PARTNERS and all("discrete-gaussian+secagg" in c.description for c in charges)
    assert all(compose_epsilon([c.event], batch.delta) == pytest.approx(compose_epsilon([local_event], batch.delta))
               for c in charges)
    assert privacy["epsilon_spent_max"] == pytest.approx(1.0, rel=1e-3)


@pytest.mark.slow
def test_a_sum_that_lost_a_partner_is_never_unmasked(federation, tmp_path):
    _, folders = federation
    batch = default_batch("synthetic", epsilon=1.0, only=["segment-profile-rfm"])
    grid = SecAggGrid(folders, victim=1)
    rc = _config(tmp_path, batch)
    with pytest.raises(SecureAggregationError, match="lacks noise shares"):
        run_task(grid, rc)
    assert len(grid.unmask_replies) == PARTNERS - 1  # the partners still online refused their unmasking shares
    assert all(r.has_error() and "refuses to unmask" in r.error.reason for r in grid.unmask_replies)
    assert InsightStore(rc["ledger-url"]).list() == []


@pytest.mark.slow
def test_a_tolerated_drop_out_is_released_with_the_remaining_shares(federation, tmp_path):
    _, folders = federation
    batch = default_batch("synthetic", epsilon=1.0, only=["segment-profile-rfm"])
    grid = SecAggGrid(folders, victim=1)
    run_task(grid, _config(tmp_path, batch, **{"max-dropouts": 1}))
    privacy = json.loads((tmp_path / "out" / "summary.json").read_text())["privacy"]
    assert privacy["secagg"]["contributors"] == PARTNERS - 1 and privacy["secagg"]["noise_shares"] == PARTNERS - 1
    q = privacy["secagg"]["queries"]["segment-profile-rfm"]  # the two shares present carry the full variance
    assert q["noise_sd"] == pytest.approx(q["local_noise_sd"] * q["inflation"] / math.sqrt(PARTNERS), rel=1e-6)
    stored = json.loads((tmp_path / "out" / "insights.json").read_text())["insights"]
    assert stored[0]["partners"] == PARTNERS - 1


def test_too_many_tolerated_drop_outs_are_refused_before_anyone_is_contacted(tmp_path):
    from fedinsight.core.errors import ConfigError

    batch = default_batch("synthetic", epsilon=1.0, only=["segment-profile-rfm"])
    grid = SecAggGrid({0: "unused", 1: "unused", 2: "unused"})
    with pytest.raises(ConfigError, match="max-dropouts"):
        run_task(grid, _config(tmp_path, batch, **{"max-dropouts": 3}))
    assert grid.sent == []


@pytest.mark.slow
def test_every_value_sent_is_declared_and_the_charge_is_the_manifests(shared_own_federation, tmp_path):
    """The task contract's check (tests/flows/every_task) on the distributed-noise mode."""
    from support.federations import PARTNER_NAMES, run_in_process

    from fedinsight.federation.guard import check_reply, spec_for
    from fedinsight.federation.task import job_delta

    federation = shared_own_federation  # the session's own federation (tests/conftest.py), only read here
    run = run_in_process("insights", federation, tmp_path, **{"noise-model": "distributed-secagg"})
    manifest = run.session.guard.manifest
    assert run.summary["messages"]["violations"] == [] and run.summary["messages"]["failures"] == []
    pairs = list(zip(run.grid.sent, run.grid.replies, strict=True))
    kinds = set()
    for msg, reply in pairs:
        assert not reply.has_error(), reply.error.reason
        kind = "secagg" if "." not in msg.metadata.message_type else str(msg.content["config"]["phase"])
        kinds.add(kind)
        check_reply(reply, spec_for(manifest, kind))
    assert kinds == {"hello", "secagg"}
    delta = job_delta(run.session.plan, run.session.options)
    expected = compose_epsilon(manifest.events(), delta)
    assert run.summary["privacy"]["epsilon_charged"] == pytest.approx(expected, rel=1e-6)
    own = PrivacyLedger(f"sqlite:///{tmp_path / 'partners.db'}")
    for partner in PARTNER_NAMES:  # each partner's own gate spent the same
        assert compose_epsilon(own.job_events(partner, run.session.job.job_id), delta) == pytest.approx(expected,
                                                                                                      rel=1e-6)


@pytest.mark.slow
def test_partners_above_the_public_bound_refuse_and_nothing_stays_charged(federation, tmp_path):
    _, folders = federation
    batch = default_batch("synthetic", epsilon=1.0, only=["segment-profile-rfm"])
    grid = SecAggGrid(folders)
    rc = _config(tmp_path, batch, **{"max-customers": 100})  # each partner has ~3,000 customers
    with pytest.raises(SecureAggregationError):
        run_task(grid, rc)
    refusals = [r for r in grid.replies if r.has_error()]
    assert len(refusals) == PARTNERS and all("--max-customers 100" in r.error.reason for r in refusals)
    assert InsightStore(rc["ledger-url"]).list() == []
    ledger = PrivacyLedger(rc["ledger-url"])  # nobody released anything private: the charges were taken back
    assert all(ledger.status(p).epsilon_spent == 0 for p in ledger.partners())


@pytest.mark.slow
def test_a_partner_that_trusts_fewer_partners_than_the_job_assumes_refuses(federation, tmp_path):
    _, folders = federation
    batch = default_batch("synthetic", epsilon=1.0, only=["segment-profile-rfm"])
    grid = SecAggGrid(folders)
    grid.contexts[101].node_config["max-honest-partners"] = 2  # partner-1's own setting, not the coordinator's
    with pytest.raises(SecureAggregationError, match="lacks noise shares"):
        run_task(grid, _config(tmp_path, batch))
    refusal = [r for r in grid.replies if r.has_error() and "max-honest-partners" in r.error.reason]
    assert len(refusal) == 1 and "trusts at most 2" in refusal[0].error.reason
    assert InsightStore(f"sqlite:///{tmp_path / 'ledger.db'}").list() == []
    # the same partner takes part when the job assumes no more honest partners than it trusts
    grid = SecAggGrid(folders, victim=None)
    grid.contexts[101].node_config["max-honest-partners"] = 2
    run_task(grid, _config(tmp_path, batch, **{"job-id": "trust-2", "honest-partners": 2}))
    privacy = json.loads((tmp_path / "out" / "summary.json").read_text())["privacy"]
    assert privacy["secagg"]["noise_shares"] == 2 and "at least 2 partners do not collude" in privacy["trust_model"]
