"""DP insights end to end without Ray: intervals cover the truth, budgets are priced, charged and refused,
the ledger agrees with independent accountants, and no output carries a partner's own figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from dp_accounting import dp_event
from support.insights import FakeGrid, run_task

import fedinsight.tasks.insights.server as server_insights
from fedinsight.core.errors import BudgetExceededError, ConfigError, PartnerReplyError
from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.federation.store import InsightStore
from fedinsight.privacy.allocation import batch_event, split_budget
from fedinsight.privacy.intervals import laplace_sum_z95
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.insights.catalogue import default_batch, parse_batch
from fedinsight.tasks.insights.results import combine, paired_estimates
from fedinsight.tasks.insights.simulate import partner_replies, release_in_process


@pytest.fixture(scope="module")
def synth():
    frames, truth = generate_partner_frames(SynthConfig(customers=30_000, partners=3, seed=7))
    return {p: PartnerData(p, **t) for p, t in frames.items()}, truth


def _coverage(noisy: list[dict], exact: list[dict]) -> tuple[int, int]:
    hits = total = 0
    for released, reference in zip(noisy, exact, strict=True):
        for _, est, ref in paired_estimates(released["result"], reference["result"]):
            if "sampling_sd" in est:  # A/B differences cover a population quantity, checked separately
                continue
            total += 1
            hits += est["ci95"][0] - 1e-9 <= ref["value"] <= est["ci95"][1] + 1e-9
    return hits, total


@pytest.mark.slow
@pytest.mark.parametrize("mechanism", ["gaussian", "laplace"])
def test_intervals_cover_the_exact_aggregates_at_about_95_percent(synth, mechanism):
    partners, _ = synth
    batch = default_batch("synthetic", epsilon=1.0, mechanism=mechanism)
    exact = release_in_process(partners, batch, exact=True)
    hits = total = 0
    # 12 releases of ~330 estimates: the coverage has mean ~0.954 (gaussian) / ~0.956 (laplace) and sd ~0.0043
    # over 12 releases (measured over 150 releases each; estimates within a release are correlated, 1.65 x the
    # binomial variance), so [0.92, 0.98] is >= 5.5 sd from it (~1e-8 per run); with the 6 releases used before
    # the upper bound was 3.9 sd away (~5e-5 per run)
    for _ in range(12):
        h, t = _coverage(release_in_process(partners, batch), exact)
        hits, total = hits + h, total + t
    assert total > 1600
    assert 0.92 <= hits / total <= 0.98, hits / total


def test_laplace_sum_quantile_is_exact():
    rng = np.random.default_rng(0)  # checking a quantile formula, not drawing DP noise
    for k in (1, 3, 10):
        sums = rng.laplace(size=(200_000, k)).sum(axis=1)
        assert np.mean(np.abs(sums) <= laplace_sum_z95(k) * math.sqrt(2 * k)) == pytest.approx(0.95, abs=0.003)


def _values(node) -> list[float]:
    """Every released ``value`` (what a leaked partner figure would show up as, bit for bit)."""
    if isinstance(node, dict):
        own = [float(node["value"])] if "value" in node and "ci95" in node else []
        return own + [x for k, v in node.items() if k != "value" for x in _values(v)]
    if isinstance(node, list):
        return [x for v in node for x in _values(v)]
    return []


def _numbers(node) -> list[float]:
    if isinstance(node, dict):
        return [x for v in node.values() for x in _numbers(v)]
    if isinstance(node, list):
        return [x for v in node for x in _numbers(v)]
    return [float(node)] if isinstance(node, int | float) and not isinstance(node, bool) else []


def test_no_output_number_is_a_partner_figure(synth):
    partners, _ = synth
    batch = default_batch("synthetic", epsilon=2.0)
    noises = server_insights.price_batch(batch)
    replies = partner_replies(partners, batch)
    exact = partner_replies(partners, batch, exact=True)
    insights = server_insights.release_batch(batch, noises, replies)
    partner_figures = []
    for reply_set in (replies, exact):
        for reply in reply_set:
            for r in reply.values():
                scales = np.concatenate([np.broadcast_to(np.asarray(m["scale"], dtype=float),  # funnels: per stage
                                                         [len(k) for _, k in m["dims"]]).ravel()
                                         for m in r["layout"]])
                partner_figures.append(np.asarray(r["values"]) * scales)
    figures = np.unique(np.concatenate(partner_figures))
    figures = figures[np.abs(figures) > 1.0]  # exact zeros/ones also arise from clipping rates to [0, 1]
    released = np.array([x for i in insights for x in _values(i["result"])])
    declared = {*_numbers(batch.features.model_dump()), *(x for i in insights for x in _numbers(i["query"]))}
    released = released[(np.abs(released) > 1.0) & ~np.isin(released, list(declared))]  # clip bounds are public
    assert np.all(np.isfinite(released))
    assert released.size > 150
    nearest = np.abs(figures[np.clip(np.searchsorted(figures, released), 0, figures.size - 1)] - released)
    assert np.all(nearest > 1e-12 * np.abs(released)), "an output equals a single partner's own figure"
    text = json.dumps(insights)
    assert not any(pid in text for pid in partners)


def test_one_partner_is_not_enough(synth):
    partners, _ = synth
    one = dict(list(partners.items())[:1])
    with pytest.raises(ConfigError, match="at least 2 partners"):
        release_in_process(one, default_batch("synthetic", epsilon=1.0))


def _mironov_laplace_eps(multipliers: list[float], delta: float) -> float:
    """Independent accountant: closed-form RDP of the Laplace mechanism (Mironov 2017, Prop. 6),
    composed by addition, converted with the improved bound of Balle et al. (2020)."""
    best = math.inf
    for alpha in np.concatenate([np.linspace(1.01, 10, 900), np.linspace(10, 512, 2000)]):
        rdp = 0.0
        for b in multipliers:
            rdp += 1 / (alpha - 1) * math.log(alpha / (2 * alpha - 1) * math.exp((alpha - 1) / b)
                                              + (alpha - 1) / (2 * alpha - 1) * math.exp(-alpha / b))
        eps = rdp + math.log1p(-1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
        best = min(best, eps)
    return best


@pytest.mark.parametrize("mechanism", ["gaussian", "laplace"])
def test_ledger_epsilon_agrees_with_independent_accountants(tmp_path, mechanism):
    weights = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 0.5}
    delta = 1e-6
    noises = split_budget(weights, 1.5, delta, mechanism)
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.set_budget("p", 10.0, delta)
    ledger.charge("p", batch_event(noises), job_id="b1", kind="query")
    ledger.charge("p", batch_event(noises), job_id="b2", kind="query")
    spent = ledger.status("p").epsilon_spent
    if mechanism == "gaussian":
        from opacus.accountants import RDPAccountant

        acc = RDPAccountant()
        acc.history = [(n.multiplier, 1.0, 2) for n in noises.values()]  # full-batch Gaussian, twice each
        independent = acc.get_epsilon(delta)
    else:
        independent = _mironov_laplace_eps([n.multiplier for n in noises.values()] * 2, delta)
    assert spent == pytest.approx(independent, rel=0.03)
    # one batch costs what was asked for
    assert compose_epsilon([batch_event(noises)], delta) == pytest.approx(1.5, rel=1e-3)


@pytest.fixture(scope="module")
def partner_folders(tmp_path_factory, synth):
    from fedinsight.data.federation import write_partner_folder

    partners, _ = synth
    from fedinsight.partner.policy_init import init_federation

    root = tmp_path_factory.mktemp("partners")
    write_partner_folder(partners, root)
    init_federation(root)  # each partner declares the generator's identifier columns (drop)
    return {k: str(root / pid) for k, pid in enumerate(partners)}


def _config(tmp_path, batch, **extra) -> dict:
    return {"task": "insights", "batch": batch.model_dump_json(), "partners": 3,
            "ledger-url": f"sqlite:///{tmp_path / 'ledger.db'}", "out-dir": str(tmp_path / "out"), **extra}


def test_server_task_charges_first_then_refuses_before_partners_compute(tmp_path, partner_folders):
    batch = default_batch("synthetic", epsilon=1.0, only=["segment-profile-rfm", "ab-lift"])
    grid = FakeGrid(partner_folders)
    rc = _config(tmp_path, batch, **{"budget-epsilon": 1.2})  # (the old spelling of "budget" still reads)
    run_task(grid, rc)  # two Gaussian batches compose to ~1.44 > 1.2
    assert grid.sent == ["hello"] * 3 + ["compute"] * 3
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["privacy"]["epsilon_spent_max"] == pytest.approx(1.0, rel=1e-3)
    assert [i["name"] for i in summary["insights"]] == ["segment-profile-rfm", "ab-lift"]
    stored = InsightStore(rc["ledger-url"]).list()
    assert {s.name for s in stored} == {"segment-profile-rfm", "ab-lift"}
    assert all(s.epsilon > 0 and s.requester == "analyst" for s in stored)

    grid.sent.clear()
    again = default_batch("synthetic", epsilon=1.0, only=["segment-profile-rfm"])
    with pytest.raises(BudgetExceededError, match="remaining"):
        run_task(grid, _config(tmp_path, again, budget=1.2))
    assert "compute" not in grid.sent  # refused before any partner computed
    assert len(InsightStore(rc["ledger-url"]).list()) == 2
    ledger = PrivacyLedger(rc["ledger-url"])  # a fresh process would see the same
    assert ledger.status("partner-0").charges == 1


def test_server_task_needs_budgets_and_partners_can_refuse(tmp_path, partner_folders):
    batch = default_batch("synthetic", epsilon=1.0, only=["ltv-tiers"])
    from fedinsight.core.errors import UnknownPartnerError

    with pytest.raises(UnknownPartnerError, match="no privacy budget"):
        run_task(FakeGrid(partner_folders), _config(tmp_path, batch))
    strict = FakeGrid(partner_folders, limit=0.5)  # each partner's own cap: 0.5 over its whole life
    with pytest.raises(BudgetExceededError, match="its own cap 0.5"):
        run_task(strict, _config(tmp_path, batch, budget=5.0))


def test_partner_data_problems_come_back_typed_and_nothing_is_charged(tmp_path, partner_folders):
    import pandas as pd

    from fedinsight.core.errors import DataValidationError

    bad = tmp_path / "bad"
    bad.mkdir()
    customers = pd.read_parquet(f"{partner_folders[1]}/customers.parquet").drop(columns=["customer_id"])
    customers.to_parquet(bad / "customers.parquet")
    grid = FakeGrid({0: partner_folders[0], 1: str(bad), 2: partner_folders[2]})
    batch = default_batch("synthetic", epsilon=1.0, only=["ltv-tiers"])
    with pytest.raises(DataValidationError, match="customer_id"):
        run_task(grid, _config(tmp_path, batch, budget=5.0))
    assert grid.sent == ["hello"] * 3
    assert PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}").partners() == []


def test_check_affordable_names_remaining_budget(tmp_path):
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'l.db'}")
    for pid, budget in (("a", 5.0), ("b", 0.5)):
        ledger.set_budget(pid, budget, 1e-6)
    noises = server_insights.price_batch(default_batch("synthetic", epsilon=1.0))
    with pytest.raises(BudgetExceededError, match=r"b: would reach epsilon 1 > budget 0.5 .*remaining 0.5"):
        server_insights.check_affordable(ledger, ["a", "b"], noises)
    assert ledger.status("a").charges == 0


def test_combine_refuses_other_noise_or_layouts(synth):
    partners, _ = synth
    batch = default_batch("synthetic", epsilon=1.0, only=["ltv-tiers"])
    noises = server_insights.price_batch(batch)
    replies = [r["ltv-tiers"] for r in partner_replies(partners, batch)]
    cheap = dict(replies[0], multiplier=replies[0]["multiplier"] / 10)
    with pytest.raises(PartnerReplyError, match="other noise"):
        combine("ltv-tiers", [cheap, *replies[1:]], noises["ltv-tiers"])
    short = dict(replies[1], values=replies[1]["values"][:-1])
    with pytest.raises(PartnerReplyError, match="shorter|longer"):
        combine("ltv-tiers", [short, short], noises["ltv-tiers"])
    combined = combine("ltv-tiers", replies, noises["ltv-tiers"])
    var = combined.measures["customers"].variance
    assert np.allclose(var, 3 * replies[0]["noise_variance"])  # partner noise variances add up


def _planted_conversion(truth: dict, lift: float) -> float:
    """Population conversion (exposed -> converted) implied by the planted funnel parameters."""
    funnel = truth["funnel"]
    shares = truth["segments"]["shares"]
    total = 0.0
    for channel, p_ch in funnel["channel_mix"].items():
        for seg, p_seg in shares.items():
            r = funnel["step_rates"][channel][seg]
            total += p_ch * p_seg * r["click"] * r["participate"] * min(1.0, r["convert"] * lift)
    return total


@pytest.mark.slow
def test_ab_lift_finds_the_planted_lift_and_covers_it():
    covered = significant = 0
    seeds = (1, 2, 3)
    for seed in seeds:
        frames, truth = generate_partner_frames(SynthConfig(customers=40_000, partners=2, seed=seed))
        partners = {p: PartnerData(p, **t) for p, t in frames.items()}
        batch = default_batch("synthetic", epsilon=8.0, only=["ab-lift", "golden-hours"])
        insights = {i["name"]: i for i in release_in_process(partners, batch)}
        camp1 = insights["ab-lift"]["result"]["campaigns"][0]
        planted = _planted_conversion(truth, 1.3) - _planted_conversion(truth, 1.0)
        lo, hi = camp1["difference"]["ci95"]
        covered += lo <= planted <= hi
        significant += camp1["significant"] and camp1["difference"]["value"] > 0
        champions = insights["golden-hours"]["result"]["groups"][0]
        assert champions["rfm_segment"] == "champions" and 17 <= int(champions["golden_hour"]) <= 21
    assert covered >= len(seeds) - 1 and significant >= len(seeds) - 1


def test_plan_skips_what_no_partner_holds():
    batch = default_batch("synthetic", epsilon=1.0)
    planned, skipped = server_insights.plan_batch(batch, {"a": {"customers": [], "transactions": []}})
    assert {s["name"] for s in skipped} == {"funnel-by-channel", "funnel-by-segment", "golden-hours",
                                            "channel-response", "ab-lift"}
    assert all("events" in s["reason"] for s in skipped)
    assert len(planned.queries) == 4
    with pytest.raises(ConfigError, match="none of the requested"):
        server_insights.plan_batch(default_batch("synthetic", epsilon=1.0, only=["ab-lift"]), {"a": {}})


def test_cdnow_catalogue_runs_without_events():
    from fedinsight.data.federation import PartitionSpec, load_federation

    partners = load_federation("cdnow", PartitionSpec(partners=3, seed=0))
    batch = default_batch("cdnow", epsilon=1.0)
    assert all(not q.needs_events for q in batch.queries)
    insights = release_in_process(partners, batch)
    profile = insights[0]["result"]["groups"]
    total = sum(g["customers"]["value"] for g in profile if not g.get("suppressed"))
    assert total == pytest.approx(23_570, rel=0.02)


@pytest.mark.parametrize(("patch", "match"), [
    ({"queries": [{"kind": "funnel", "name": "f"}]}, "needs the declared list of channels"),
    ({"queries": [{"kind": "teleport", "name": "t"}]}, "kind"),
    ({"queries": [{"kind": "ltv_tiers", "name": "a"}, {"kind": "ltv_tiers", "name": "a"}]}, "unique"),
    ({"epsilon": 0}, "epsilon"),
    ({"features": {"as_of": "someday"}}, "as_of"),
    ({"min_group_size": 0}, "min_group_size"),
    ({"min_group_size": 9}, "min_group_size"),  # below the floor no job or API request can go
    ({"queries": [{"kind": "group_by", "name": "g", "table": "transactions", "group_by": ["channel"],
                   "aggregates": ["sum"]}]}, "bounds"),
])
def test_bad_batches_are_refused_with_what_to_fix(patch, match):
    base = {"features": {"as_of": "2026-01-01"}, "queries": [{"kind": "ltv_tiers", "name": "l"}], "epsilon": 1.0}
    with pytest.raises(ConfigError, match=match):
        parse_batch({**base, **patch})


def test_feature_rule_defaults_match_the_partner_side():
    from dataclasses import fields

    from fedinsight.tasks.insights.catalogue import FeatureRulesSpec
    from fedinsight.tasks.insights.customer_features import FeatureRules

    spec = FeatureRulesSpec(as_of="2026-01-01")
    partner = FeatureRules(as_of="2026-01-01")
    assert set(spec.model_dump()) == {f.name for f in fields(FeatureRules)}
    for f in fields(FeatureRules):
        assert getattr(partner, f.name) == pytest.approx(getattr(spec, f.name)) if f.name != "as_of" else True


def test_query_event_round_trip_through_ledger(tmp_path):
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.set_budget("p", 3.0, 1e-6)
    noises = server_insights.price_batch(default_batch("synthetic", epsilon=1.0))
    ledger.charge("p", batch_event(noises), job_id="x", kind="query")
    (charge,) = ledger.charges("p")
    assert isinstance(charge.event, dp_event.ComposedDpEvent) and len(charge.event.events) == len(noises)


def test_no_option_spec_or_request_goes_below_the_minimum_group_floor():
    from fedinsight.privacy.suppression import MIN_GROUP_FLOOR
    from fedinsight.tasks.insights.options import InsightsOptions
    from fedinsight.tasks.insights.spec import parse_spec

    with pytest.raises(ConfigError, match="min"):
        InsightsOptions.of({"min_group_size": MIN_GROUP_FLOOR - 1}, what="insights")
    assert InsightsOptions.of({"min_group_size": MIN_GROUP_FLOOR}, what="insights").min_group_size == MIN_GROUP_FLOOR
    with pytest.raises(ConfigError, match="min_group_size"):
        parse_spec(f'preset = "marketing-overview"\nmin_group_size = {MIN_GROUP_FLOOR - 1}\n')
