"""An analyst's own spec on a federation with its own campaign and channel names: insights come back under those
names, keys can be discovered privately (never a rare one, always charged and declared), the planner's noise is
the noise released, a too-small federation is refused before anything is charged, and hours are local time."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.federations import PARTNER_NAMES, own_federation, run_in_process

from fedinsight.cli import main
from fedinsight.data.schema import PartnerData
from fedinsight.data.synth import SynthConfig, generate_partner_frames
from fedinsight.federation.budget import stated_epsilon
from fedinsight.federation.guard import check_reply, spec_for
from fedinsight.federation.task import job_delta
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon, threshold_delta
from fedinsight.privacy.suppression import DEFAULT_MIN_GROUP_SIZE
from fedinsight.tasks.insights import discovery
from fedinsight.tasks.insights.aggregates import OTHER
from fedinsight.tasks.insights.customer_features import FeatureRules, customer_features
from fedinsight.tasks.insights.options import InsightsOptions
from fedinsight.tasks.insights.planner import plan_job
from fedinsight.tasks.insights.results import combine
from fedinsight.tasks.insights.server import price_batch
from fedinsight.tasks.insights.simulate import local_aggregates, noisy_replies, release_in_process
from fedinsight.tasks.insights.spec import Sizes, canonical, parse_spec

CHANNELS = {"email": "微信小程序", "sms": "APP", "app_push": "门店", "social": "抖音", "search": "Baidu 搜索"}
CAMPAIGNS = {"campaign-1": "春节大促", "campaign-2": "Black Friday"}
OWN = ("华东零售", "shop us", "银行-eu")
RARE = "Rare channel (one customer)"


def _own_names(root: Path, customers: int = 9_000, seed: int = 11) -> Path:
    """Partner folders whose events use the user's own campaign and channel names (and one rare channel)."""
    frames, _ = generate_partner_frames(SynthConfig(customers=customers, partners=len(OWN), seed=seed))
    for (_, tables), name in zip(sorted(frames.items()), OWN, strict=True):
        events = tables["events"].copy()
        events["channel"] = events["channel"].map(CHANNELS)
        events["campaign"] = events["campaign"].map(CAMPAIGNS)
        first = events.index[0]
        events.loc[first, "channel"] = RARE  # one customer of each partner holds the rare channel
        tables = {**tables, "events": events}
        folder = root / name
        folder.mkdir(parents=True)
        for table, frame in tables.items():
            if table == "customers":
                frame = frame.drop(columns=["name", "phone", "email"])
            frame.to_csv(folder / f"{table}.csv", index=False)
        init_partner(folder)
    return root


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    return _own_names(tmp_path_factory.mktemp("own-names") / "partners")


def _run(root: Path, out: Path, spec: str, **extra):
    from types import SimpleNamespace

    fed = SimpleNamespace(root=root, catalogue=root)  # what run_in_process reads of a federation
    import support.federations as federations

    original = federations.PARTNER_NAMES
    federations.PARTNER_NAMES = OWN
    try:
        return run_in_process("insights", fed, out, spec=canonical(parse_spec(spec)), only="", **{"as-of": ""},
                              **extra)
    finally:
        federations.PARTNER_NAMES = original


SPEC = """
title = "Spring festival vs Black Friday"
epsilon = 4.0
[window]
end = "2026-01-01"
[keys]
campaigns = ["春节大促", "Black Friday"]
channels = "discover"
[[insight]]
name = "funnel-by-channel"
kind = "funnel"
by = "channel"
[[insight]]
name = "lift"
kind = "ab_test"
[[insight]]
name = "response"
kind = "channel_response"
by = "all"
"""


def test_own_campaign_and_channel_names_come_back_under_those_names(own, tmp_path):
    run = _run(own, tmp_path, SPEC)
    summary = run.summary
    assert summary["keys"]["campaigns"] == {"source": "declared", "keys": ["春节大促", "Black Friday"]}
    found = summary["keys"]["channels"]
    assert found["source"] == "discovered" and set(found["keys"]) == set(CHANNELS.values())  # all five, no more
    doc = json.loads((tmp_path / "insights.json").read_text())
    by_name = {i["name"]: i for i in doc["insights"]}
    funnel = {g["channel"]: g for g in by_name["funnel-by-channel"]["result"]["groups"]}
    assert set(funnel) == {*CHANNELS.values(), OTHER}
    for channel in CHANNELS.values():  # every own channel released under its own name, exposures not suppressed
        assert not funnel[channel]["customers"]["exposure"].get("suppressed"), channel
    # "other" holds only the rare channel's one customer: suppressed unless the noise alone lifts its noisy count
    # over the bar (exposures carry 3.3x a plain count's noise: ~1 run in 9 here), and never released below it
    # (and, released, its count is one customer plus noise: within 6 sd, so a channel's customers put in "other"
    # by mistake would show)
    other = funnel[OTHER]["customers"]["exposure"]
    assert other.get("suppressed") or DEFAULT_MIN_GROUP_SIZE <= other["value"] <= 1 + 6 * other["noise_sd"], other
    lift = {c["campaign"]: c for c in by_name["lift"]["result"]["campaigns"]}
    assert set(lift) == set(CAMPAIGNS.values())
    for campaign in lift.values():
        assert not campaign["arms"]["A"]["exposed"].get("suppressed")
        assert not campaign["arms"]["B"]["exposed"].get("suppressed")
    response = by_name["response"]["result"]["groups"][0]
    assert response["best_channel"] in CHANNELS.values()
    text = (tmp_path / "insights.json").read_text()
    assert RARE not in text and RARE not in json.dumps(summary)


def test_key_discovery_is_declared_charged_and_never_shows_a_rare_key(own, tmp_path):
    run = _run(own, tmp_path, SPEC)
    manifest = run.session.guard.manifest
    assert run.summary["messages"]["violations"] == [] and run.summary["messages"]["failures"] == []
    kinds = [m.content["config"]["phase"] for m in run.grid.sent]
    assert kinds.index("discover") < kinds.index("compute")  # keys first, then the batch that uses them
    for msg, reply in zip(run.grid.sent, run.grid.replies, strict=True):
        check_reply(reply, spec_for(manifest, msg.content["config"]["phase"]))
    releases = {r.reply: r for r in manifest.private()}
    assert releases["discover"].mechanism == "gaussian-threshold" and releases["discover"].event is not None
    docs = (Path(__file__).resolve().parents[3] / "docs" / "privacy.md").read_text()
    for release in manifest.releases:
        assert f"| {release.reply} | {release.record}:" in docs, (release.reply, release.record)
    made = Counter(m.metadata.dst_node_id for m, r in zip(run.grid.sent, run.grid.replies, strict=True)
                   if m.content["config"]["phase"] == "discover" and discovery.RECORD in r.content)
    assert sorted(made.values()) == [1] * len(OWN)
    # the coordinator's charge and every partner's own gate equal the manifest's composed cost, discovery included
    # (epsilon at the job's delta, plus the threshold's delta, which every ledger records and takes from its budget)
    delta = job_delta(run.session.plan, run.session.options)
    expected = stated_epsilon(manifest.events(), delta)
    assert expected == pytest.approx(4.0, rel=1e-4)  # the spec's epsilon covers discovery and the insights
    assert run.summary["privacy"]["epsilon_charged"] == pytest.approx(expected, rel=1e-6)
    thresholding = run.session.state["discovery"]["max_delta"]
    assert thresholding == pytest.approx(delta / 1000) and threshold_delta(manifest.events()) == thresholding
    assert run.summary["privacy"]["delta_thresholding"] == pytest.approx(thresholding)
    coordinator = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    own_ledgers = PrivacyLedger(f"sqlite:///{tmp_path / 'partners.db'}")
    for partner in OWN:
        status = coordinator.status(partner)  # a budget of delta + the threshold's: epsilon as stated
        assert status.delta == pytest.approx(delta + thresholding)
        assert status.epsilon_spent == pytest.approx(expected, rel=1e-6)
        events = own_ledgers.job_events(partner, run.session.job.job_id)
        assert threshold_delta(events) == pytest.approx(thresholding)
        assert stated_epsilon(events, delta) == pytest.approx(expected, rel=1e-6)
        assert compose_epsilon(events, delta) > expected  # the same events at the job's delta alone cost more
    # what each partner sent: only keys held by many customers, the rare channel never
    for reply in run.grid.replies:
        if discovery.RECORD in reply.content:
            sent = json.loads(str(reply.content[discovery.RECORD][discovery.RECORD]))
            assert RARE not in {k for k, _ in sent["channels"]}
            assert all(count >= run.summary["keys"]["channels"]["threshold"] for _, count in sent["channels"])


def test_a_key_of_one_customer_is_never_released_and_a_common_one_is():
    frames, _ = generate_partner_frames(SynthConfig(customers=2_000, partners=1, seed=4))
    tables = dict(next(iter(frames.values())))
    events = tables["events"].copy()
    events.loc[events.index[0], "channel"] = RARE
    data = PartnerData("p", **{**tables, "events": events})
    spec = parse_spec('epsilon = 1.0\n[window]\nend = "2026-01-01"\n[keys]\nchannels = "discover"\n'
                      '[[insight]]\nname = "f"\nkind = "funnel"\n')
    job = InsightsOptions(spec=canonical(spec)).spec_job(requester="t")
    batch, _ = job.batch()
    noise = price_batch(batch, extra={discovery.NAME: 1.0})[discovery.NAME]
    wire = discovery.wire_of(job, ["channels"], noise, min_group_size=1, delta=1e-6)
    features = customer_features(data, FeatureRules.from_dict(wire["features"]))
    exact = discovery.local_counts(features, wire["dimensions"], 2)["channels"]
    assert exact[RARE] == 1 and exact["email"] > wire["threshold"] + 10 * noise.multiplier * np.sqrt(2)
    for _ in range(300):  # delta 1e-7 per release: 300 releases show it with probability < 3e-5
        found = dict(discovery.discover(data, wire)["channels"])
        assert RARE not in found and "email" in found


def test_the_planners_noise_is_the_noise_released():
    frames, _ = generate_partner_frames(SynthConfig(customers=3_000, partners=2, seed=9))
    partners = {p: PartnerData(p, **t) for p, t in frames.items()}
    for mechanism in ("gaussian", "laplace"):
        spec = parse_spec(f'epsilon = 1.0\nmechanism = "{mechanism}"\n[window]\nend = "2026-01-01"\n'
                          '[keys]\nchannels = ["email", "sms", "app_push", "social", "search"]\n'
                          '[[insight]]\nname = "seg"\nkind = "segment_profile"\n'
                          '[[insight]]\nname = "funnel"\nkind = "funnel"\nweight = 3\n')
        job = InsightsOptions(spec=canonical(spec)).spec_job(requester="t")
        plan = plan_job(job, len(partners), sizes=Sizes(customers=3_000))
        # one class per funnel stage (each stage has its own unit, aggregates.STAGE_WEIGHTS), one for segments
        predicted = {(i.name, j): c.noise_sd for i in plan.insights for j, c in enumerate(i.classes)}
        batch, _ = job.batch()
        noises = price_batch(batch)
        exact = local_aggregates(partners, batch)
        truth = {name: sum(p[name].by_name()["customers"].values for p in exact) for name in ("seg", "funnel")}
        errors: dict[tuple[str, int], list[np.ndarray]] = {key: [] for key in predicted}
        for _ in range(150):
            replies = noisy_replies(exact, batch)
            for name, j in errors:
                combined = combine(name, [r[name] for r in replies], noises[name]).measures["customers"]
                diff = combined.values - truth[name]
                errors[(name, j)].append(np.ravel(diff[:, j] if diff.ndim == 2 else diff))
        # every stage has its own noise (its own weight)
        assert len({sd for (name, _), sd in predicted.items() if name == "funnel"}) == 4
        for key, draws in errors.items():
            sample = np.concatenate(draws)  # 150 draws x (5 or 6) cells, independent noise
            sd = float(np.std(sample, ddof=1))
            se = predicted[key] / np.sqrt(2 * (sample.size - 1))  # standard error of a sample sd (normal)
            tolerance = 5 * se * (1.6 if mechanism == "laplace" else 1.0)  # Laplace: heavier tails, larger se
            assert abs(sd - predicted[key]) < tolerance, (mechanism, key, sd, predicted[key])

TOO_SMALL = """
preset = "marketing-overview"
epsilon = 0.5
[window]
end = "2026-01-01"
[keys]
channels = ["email", "sms", "app_push", "social", "search"]
campaigns = ["campaign-1", "campaign-2"]
purchase_channels = ["store", "web", "app"]
[federation]
customers = 300
clicked = 100
converted = 30
"""


def test_a_too_small_federation_is_refused_before_anything_is_charged(tmp_path, capsys):
    from fedinsight.data.synth import write_synthetic
    from fedinsight.partner.policy_init import init_federation

    data = tmp_path / "data"
    write_synthetic(SynthConfig(customers=600, partners=2, seed=2), data, finalize=init_federation)
    spec = tmp_path / "mine.toml"
    spec.write_text(TOO_SMALL, encoding="utf-8")
    for args in (["insights", "run", str(spec), "--dataset", str(data), "--out", str(tmp_path / "run")],
                 ["simulate", "insights", "--dataset", str(data), "--spec", str(spec), "--out", str(tmp_path / "sim")]):
        assert main(args) == 2
        captured = capsys.readouterr()
        assert "most answers would be suppressed" in captured.err and "--yes" in captured.err
        assert "customers over all partners" in captured.err  # how many would be needed
        assert "Insight plan" in captured.out and "needed" in captured.out  # the plan was shown first
    assert not (tmp_path / "run").exists() and not (tmp_path / "sim").exists()  # no ledger, nothing charged
    assert main(["insights", "plan", str(spec), "--dataset", str(data), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["mostly_suppressed"] and plan["needed_customers"] > 300 and plan["warning"]


def _events_at(hour_utc: int, customers: int, prefix: str, day: str = "2025-12-03") -> dict[str, pd.DataFrame]:
    ids = [f"{prefix}{i:04d}" for i in range(customers)]
    stamp = pd.Timestamp(f"{day} {hour_utc:02d}:10:00")
    rows = [{"event_id": f"E{prefix}{i}-{s}", "customer_id": c, "timestamp": stamp + pd.Timedelta(minutes=i % 40),
             "campaign": "c", "channel": "微信小程序", "stage": s, "arm": "A"}
            for i, c in enumerate(ids) for s in ("exposure", "click")]
    return {"customers": pd.DataFrame({"customer_id": ids, "consent": True}), "events": pd.DataFrame(rows)}


def test_golden_hours_are_in_each_partners_local_time():
    # Shanghai's 20:00 is 12:00 UTC; New York's 20:00 in December (EST) is 01:00 UTC the next day
    partners = {"sh": PartnerData("sh", **_events_at(12, 400, "S"), meta={"timezone": "Asia/Shanghai"}),
                "ny": PartnerData("ny", **_events_at(1, 300, "N"), meta={"timezone": "America/New_York"})}
    expected = {"local": {"20": 700}, "UTC": {"12": 400, "01": 300}, "Asia/Shanghai": {"20": 400, "09": 300},
                "America/New_York": {"07": 400, "20": 300}}
    for zone, counts in expected.items():
        spec = parse_spec(f'epsilon = 50\ntimezone = "{zone}"\n[window]\nend = "2026-01-01"\n'
                          '[[insight]]\nname = "hours"\nkind = "golden_hours"\nby = "all"\nheatmap = false\n'
                          '[[insight]]\nname = "by-channel"\nkind = "golden_hours"\nby = "channel"\n'
                          'channels = ["微信小程序"]\n')
        batch, _ = InsightsOptions(spec=canonical(spec)).spec_job(requester="t").batch()
        insights = {i["name"]: i for i in release_in_process(partners, batch, exact=True)}
        group = insights["hours"]["result"]["groups"][0]
        golden = max(counts, key=counts.__getitem__)
        assert group["golden_hour"] == golden, zone
        released = {h: c["customers"]["value"] for h, c in group["by_hour"].items() if not c.get("suppressed")}
        assert released == counts, zone
        assert insights["hours"]["result"]["timezone"] == zone
        channel = {g["channel"]: g for g in insights["by-channel"]["result"]["groups"]}["微信小程序"]
        assert channel["golden_hour"] == golden


def test_the_report_and_summary_say_which_zone(own, tmp_path, monkeypatch):
    zones = dict(zip(OWN, ("Asia/Shanghai", "America/New_York", "Europe/Berlin"), strict=True))
    # the zone a partner's mapping declares (hello and the batch read it from the view, not from loaded tables)
    monkeypatch.setattr(PartnerView, "timezone", property(lambda self: zones[self.folder.name]))
    spec = SPEC.replace("[[insight]]\nname = \"lift\"", "[[insight]]\nname = \"hours\"\nkind = \"golden_hours\"\n"
                        "heatmap = false\n[[insight]]\nname = \"lift\"")
    run = _run(own, tmp_path, spec)
    assert run.summary["timezones"] == sorted(zones.values())
    hours = next(i for i in json.loads((tmp_path / "insights.json").read_text())["insights"] if i["name"] == "hours")
    assert hours["result"]["timezone"] == "local" and hours["result"]["zones"] == sorted(zones.values())
    from fedinsight.tasks.insights.report import insights_sections

    _, sections = insights_sections(json.loads((tmp_path / "insights.json").read_text()))
    html = "".join(str(part) for part in sections[0].parts)
    assert "each customer&#x27;s local time (America/New_York, Asia/Shanghai, Europe/Berlin)" in html \
        or "each customer's local time (America/New_York, Asia/Shanghai, Europe/Berlin)" in html
    assert "微信小程序" in html and "found privately" in html


def test_the_contract_federation_runs_a_spec_too(tmp_path_factory, tmp_path):
    fed = own_federation(tmp_path_factory.mktemp("own") / "partners", customers=1_200)
    run = run_in_process("insights", fed, tmp_path, only="", spec=canonical(parse_spec(
        'epsilon = 1.0\n[window]\nend = "2026-01-01"\n[keys]\ncategories = "discover"\n'
        '[[insight]]\nname = "spend-by-category"\nkind = "group_by"\ntable = "transactions"\n'
        'group_by = ["category"]\nvalue = "amount"\naggregates = ["mean"]\nbounds = [0, 500]\n')))
    assert run.summary["partner_ids"] == sorted(PARTNER_NAMES)
    assert run.summary["keys"]["categories"]["source"] == "discovered"


def test_the_docs_worked_example_is_a_valid_spec_and_plans():
    from fedinsight.tasks.insights import plan_spec

    docs = (Path(__file__).resolve().parents[3] / "docs" / "insights.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Your own questions"):]
    text = section[section.index("```toml") + len("```toml"):section.index("```", section.index("```toml") + 7)]
    plan = plan_spec(text, partners=2)
    names = [i.name for i in plan.insights]
    assert {"best-hour-per-channel", "spend-by-category", "funnel-by-channel", "ab-lift"} <= set(names)
    assert plan.keys["campaigns"] == "declared" and plan.keys["categories"] == "discover"
    assert plan.discovery is not None and plan.discovery["dimensions"] == ["categories"]
    assert plan.suppressed_share is not None and not plan.mostly_suppressed  # 48,000 customers: most shown


def test_spec_rules_keys_split_and_presets():
    from fedinsight.core.errors import ConfigError

    def job(text: str, top: str = "", **kwargs):
        return InsightsOptions(spec=top + '[window]\nend = "2026-01-01"\n' + text, **kwargs).spec_job(requester="t")

    preset = job('[keys]\nchannels = ["微信小程序", "APP"]\n[split]\nab-lift = 5\n'
                 '[[insight]]\nname = "golden-hours"\nkind = "golden_hours"\nby = "all"\n',
                 top='preset = "marketing-overview"\n')
    batch, _ = preset.batch()
    queries = {q.name: q for q in batch.queries}
    assert queries["funnel-by-channel"].channels == ["微信小程序", "APP"]  # type: ignore[attr-defined]
    assert queries["golden-hours"].by == "all"  # type: ignore[attr-defined]  # the own entry replaced the preset's
    assert queries["ab-lift"].weight == 5 and preset.sources["campaigns"] == "discover"
    assert preset.discover == ["campaigns", "purchase_channels"]
    assert job("[[insight]]\nname = \"x\"\nkind = \"ltv_tiers\"\n", top="epsilon = 3\n", epsilon=1.0).settings[
        "epsilon"] == 3  # the spec's own budget wins over the flag
    for bad, words in (("[split]\nnope = 2\n[[insight]]\nname = \"x\"\nkind = \"ltv_tiers\"\n", "unknown insight"),
                       ("[[insight]]\nkind = \"ltv_tiers\"\n", "needs a name"),
                       ("[keys]\nchannels = \"discover\"\n", "at least one [[insight]]"),
                       ("[[insight]]\nname = \"x\"\nkind = \"ab_test\"\nweight = -1\n", "greater than 0"),
                       ("[features]\nas_of = \"2025-01-01\"\n[[insight]]\nname = \"x\"\nkind = \"ltv_tiers\"\n",
                        "[window] end")):
        with pytest.raises(ConfigError, match=re_escape(words)):
            job(bad)
    with pytest.raises(ConfigError, match="reference date"):
        InsightsOptions(spec="[[insight]]\nname = \"x\"\nkind = \"ltv_tiers\"\n").spec_job(requester="t")


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.slow
def test_a_spec_file_runs_through_flower_from_python_and_the_cli(own, tmp_path, capsys):
    import fedinsight as fi

    spec = tmp_path / "mine.toml"
    spec.write_text(SPEC, encoding="utf-8")
    run = fi.Federation.from_folder(own).simulate("insights", spec=str(spec), out=tmp_path / "py")
    assert set(run.summary["keys"]["channels"]["keys"]) == set(CHANNELS.values())
    assert run.summary["partner_ids"] == sorted(OWN) and run.report_path is not None
    html = run.report_path.read_text(encoding="utf-8")
    assert "春节大促" in html and "found privately" in html
    assert main(["simulate", "insights", "--dataset", str(own), "--spec", str(spec), "--out", str(tmp_path / "cli"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["keys"]["campaigns"]["keys"] == ["春节大促", "Black Friday"]
    assert summary["privacy"]["epsilon_charged"] == pytest.approx(4.0, rel=1e-4)
