"""An analyst's own insight spec through the HTTP API: validated, capped, probing-checked, and the same options as
the CLI's; a plan that would hide most answers is refused (4xx, nothing started)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from fedinsight.coordinator.api import create_app
from fedinsight.coordinator.state import CoordinatorState
from fedinsight.core.errors import ConfigError
from fedinsight.tasks.insights.options import InsightsOptions

SPEC = """
epsilon = 1.0
[window]
end = "2026-01-01"
[keys]
campaigns = ["春节大促", "Black Friday"]
channels = "discover"
[[insight]]
name = "lift"
kind = "ab_test"
[[insight]]
name = "hours"
kind = "golden_hours"
by = "channel"
"""


@pytest.fixture()
def api(tmp_path):
    state = CoordinatorState(f"sqlite:///{tmp_path / 'fedinsight.db'}", tmp_path)
    submitted: list = []

    def submit(task, options, who):  # noqa: ANN001, ANN202 - what jobs.submit_job does first: check the options
        from fedinsight.federation import registry
        from fedinsight.federation.task import settings_of

        settings_of(registry.get(task), {"task": task, "partners": 2, **options})
        submitted.append((task, options))
        return state.jobs.create(task=task, federation="fedinsight", run_config=options, requester=who.name)

    client = TestClient(create_app(state, submit=submit, probe_max_variants=2))
    token = state.tokens.create("analyst-1", "analyst")[0]
    return client, {"Authorization": f"Bearer {token}"}, submitted


def test_a_spec_becomes_the_insights_jobs_options(api):
    client, h, submitted = api
    r = client.post("/queries", json={"spec": SPEC}, headers=h)
    assert r.status_code == 202, r.text
    task, options = submitted[0]
    assert task == "insights" and options["epsilon"] == 1.0
    parsed = InsightsOptions.from_run_config(options)  # the same options a CLI run or a job carries
    assert json.loads(parsed.spec)["keys"]["campaigns"] == ["春节大促", "Black Friday"]
    as_object = client.post("/queries", json={"spec": json.loads(parsed.spec)}, headers=h)
    assert as_object.status_code == 202  # JSON object, same spec


def test_bad_specs_and_budgets_are_refused_with_what_to_fix(api):
    client, h, submitted = api
    cases = {
        "epsilon = 5\n[[insight]]\nname = \"x\"\nkind = \"ltv_tiers\"\n": "epsilon must be in",
        "[keys]\nplanets = [\"mars\"]\n[[insight]]\nname = \"x\"\nkind = \"ltv_tiers\"\n": "unknown key list",
        "[keys]\narms = \"discover\"\n[[insight]]\nname = \"x\"\nkind = \"ab_test\"\n": "arms cannot be discovered",
        "epsilon = = 1": "not valid TOML",
        "timezone = \"Mars/Olympus\"\n[[insight]]\nname = \"x\"\nkind = \"ltv_tiers\"\n": "IANA zone",
    }
    for spec, words in cases.items():
        r = client.post("/queries", json={"spec": spec}, headers=h)
        assert r.status_code == 422 and words in r.json()["detail"], (spec, r.text)
    assert client.post("/queries", json={"spec": SPEC, "query": "ltv-tiers"}, headers=h).status_code == 422
    assert client.post("/queries", json={}, headers=h).status_code == 422
    too_small = SPEC + "[federation]\ncustomers = 40\n"
    r = client.post("/queries", json={"spec": too_small}, headers=h)
    assert r.status_code == 409 and "most answers would be suppressed" in r.json()["detail"]
    assert client.post("/queries", json={"spec": too_small, "accept_suppression": True}, headers=h).status_code == 202
    assert len(submitted) == 1


def test_a_spec_nudged_one_campaign_at_a_time_is_probing(api):
    client, h, _ = api
    codes = [client.post("/queries", json={"spec": SPEC.replace("Black Friday", name)}, headers=h).status_code
             for name in ("a", "b", "c")]
    assert codes == [202, 202, 403]


def test_options_take_a_spec_as_text_a_path_or_a_dict(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(SPEC, encoding="utf-8")
    from pathlib import Path

    texts = {InsightsOptions(spec=SPEC).spec, InsightsOptions(spec=Path(path)).spec,
             InsightsOptions(spec=json.loads(InsightsOptions(spec=SPEC).spec)).spec}
    assert len(texts) == 1 and "\n" not in next(iter(texts))
    with pytest.raises(ConfigError, match="looks like a file name"):
        InsightsOptions(spec="mine.toml")
    with pytest.raises(ConfigError, match="a spec or a whole batch|spec or a whole batch"):
        InsightsOptions(spec=SPEC, batch="{}")
