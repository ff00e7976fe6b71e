"""Quarterly recalibration (issue 16 item 4): the window filter, the refusals before any charge, and a warm-started
job that compares old and new model on the newest held-out customers with the lifetime epsilon from the ledger."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flwr.app import Context, RecordDict
from support.fake_grid import InProcessGrid

from fedinsight.core.errors import ConfigError
from fedinsight.data import PartitionSpec, load_federation
from fedinsight.data.federation import write_partner_folder
from fedinsight.federation.task import start
from fedinsight.models.propensity import ModelBundle, SharedScaler, TargetScaler, build_model, get_weights
from fedinsight.partner.clientapp import app as client_app
from fedinsight.partner.policy_init import init_federation
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.propensity import TASK
from fedinsight.tasks.propensity.features import FEATURES, LabelWindow, customer_table
from fedinsight.tasks.propensity.recalibrate import HISTORY_FILE, PREVIOUS, drift, previous

PARTNERS = 3
Q1 = LabelWindow(pd.Timestamp("2024-01-01"), pd.Timestamp("2025-03-31"), pd.Timestamp("2025-06-30"))
Q2 = LabelWindow(pd.Timestamp("2024-04-01"), pd.Timestamp("2025-06-30"), pd.Timestamp("2025-09-30"))


@pytest.fixture(autouse=True)
def _quiet_flower():
    logging.getLogger("flwr").setLevel(logging.WARNING)


def test_the_window_filter_excludes_later_and_earlier_transactions():
    """A partner reads only its transactions inside the job's window: purchases after its end (or before its
    start) change neither features nor labels."""
    tx = pd.DataFrame([("a", "2024-05-01", 10.0, 1), ("a", "2025-07-02", 30.0, 1), ("b", "2025-01-10", 5.0, 2)],
                      columns=["customer_id", "timestamp", "amount", "quantity"])
    tx["timestamp"] = pd.to_datetime(tx["timestamp"])
    later = pd.DataFrame([("a", "2025-10-01", 999.0, 9), ("b", "2026-01-01", 999.0, 9), ("a", "2024-03-01", 7.0, 1)],
                         columns=tx.columns).assign(timestamp=lambda f: pd.to_datetime(f["timestamp"]))
    base = customer_table(tx, Q2)
    pd.testing.assert_frame_equal(customer_table(pd.concat([tx, later], ignore_index=True), Q2), base)
    assert base.loc["a", "spend"] == 30.0  # the July purchase is in Q2's holdout; the October one is not


def _bundle(tmp_path: Path, window: LabelWindow, kind: str = "logreg") -> Path:
    model = build_model(len(FEATURES), kind, 0)
    bundle = ModelBundle(kind=kind, features=FEATURES, weights=get_weights(model),
                         scaler=SharedScaler(tuple([0.0] * len(FEATURES)), tuple([1.0] * len(FEATURES))),
                         target=TargetScaler(0.0, 1.0), tier_thresholds=(100.0, 500.0),
                         config={**window.to_config(), "job-id": "q1"})
    tmp_path.mkdir(parents=True, exist_ok=True)
    bundle.save(tmp_path / "model.pt")
    return tmp_path


def test_previous_model_is_checked_before_anything_is_charged(tmp_path):
    folder = _bundle(tmp_path / "q1", Q1)
    got = previous(str(folder), kind="logreg", window=Q2)
    assert got.window == Q1 and got.history[0]["job_id"] == "q1" and got.history[0]["warm_started_from"] is None
    with pytest.raises(ConfigError, match="no new data"):
        previous(str(folder), kind="logreg", window=Q1)
    with pytest.raises(ConfigError, match="--model logreg"):
        previous(str(folder), kind="mlp", window=Q2)
    with pytest.raises(ConfigError, match="no propensity model there"):
        previous(str(tmp_path / "nowhere"), kind="logreg", window=Q2)


def test_drift_words_compare_old_and_new():
    # calibration bins as the DP evaluation's curves carry them: customers, mean predicted, observed per bin
    old = {"calibration": {"n": [100.0, 100.0], "predicted": [0.3, 0.5], "observed": [0.1, 0.3]}}
    new = {"calibration": {"n": [100.0, 100.0], "predicted": [0.15, 0.25], "observed": [0.1, 0.3]}}
    d = drift({"ece": 0.12, "tier_accuracy": 0.55}, {"ece": 0.03, "tier_accuracy": 0.63}, Q1, Q2, old, new)
    assert d["ece_change"] == pytest.approx(-0.09) and d["tier_accuracy_change"] == pytest.approx(0.08)
    large = d["calibration_in_the_large"]
    assert (large["previous_predicted"], large["new_predicted"], large["observed"]) == pytest.approx((0.4, 0.2, 0.2))
    assert "20% bought again" in d["words"] and "expected 40%" in d["words"] and "expects 20%" in d["words"]
    assert "changed since the previous model" in d["words"] and "off by 12.0%" in d["words"]
    same = drift({"ece": 0.03}, {"ece": 0.03}, Q1, Q2, new, new)
    assert "much as it was" in same["words"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("partners")
    # 2,400 customers over 3 partners: each keeps well over 50 held-out customers in both windows (see
    # test_propensity_flow.py's fixture for the bound)
    parts = load_federation("synthetic", PartitionSpec(partners=PARTNERS, seed=0), synthetic_customers=2400)
    write_partner_folder(parts, root)
    init_federation(root)
    return root


def _run(tmp_path: Path, data_root: Path, window: LabelWindow, name: str, **extra) -> tuple[dict, InProcessGrid]:
    rc = {"task": "propensity", "partners": PARTNERS, "rounds": 2, "out-dir": str(tmp_path / name),
          "start": window.start.isoformat(), "cutoff": window.cutoff.isoformat(), "end": window.end.isoformat(),
          "data-root": str(data_root), "ledger-url": f"sqlite:///{tmp_path / 'ledger.db'}", "job-id": name,
          "dataset": "synthetic", "budget": 10.0, "budget-delta": 1e-5,
          "partner-ledger-url": f"sqlite:///{tmp_path / 'partners.db'}", **extra}
    grid = InProcessGrid(client_app, PARTNERS)
    start(TASK, grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=rc))
    return json.loads((tmp_path / name / "summary.json").read_text()), grid


@pytest.mark.slow
def test_quarter_two_warm_starts_compares_and_sums_the_lifetime(tmp_path, data_root):
    q1, _ = _run(tmp_path, data_root, Q1, "q1")
    ledger = PrivacyLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    before = {p: ledger.status(p).epsilon_spent for p in ledger.partners()}

    # a window with no new data is refused before any partner computes: nothing charged
    with pytest.raises(ConfigError, match="no new data"):
        _run(tmp_path, data_root, Q1, "q1-again", **{"recalibrate-from": str(tmp_path / "q1")})
    assert {p: ledger.status(p).epsilon_spent for p in ledger.partners()} == before

    q2, grid = _run(tmp_path, data_root, Q2, "q2", **{"recalibrate-from": str(tmp_path / "q1")})
    # the first training round starts from q1's final weights
    first_train = next(m for m in grid.sent if m.metadata.message_type.startswith("train"))
    q1_weights = ModelBundle.load(tmp_path / "q1" / "model.pt").weights
    for key, value in q1_weights.items():
        assert np.allclose(first_train.content["arrays"][key].numpy(), value, atol=1e-6)
    # old and new model each evaluated once on every partner: two charged evaluation releases
    kinds = [m.metadata.message_type.split(".")[0] for m in grid.sent]
    assert kinds.count("evaluate") == 2 * PARTNERS
    assert q2["privacy"]["evaluation"]["releases"] == 2
    # the second evaluation is declared in the manifest and in the charge: nothing dropped, both ledgers agree
    assert q2["messages"]["violations"] == [] and q2["messages"]["failures"] == []
    assert q2["privacy"]["accountants_agree_with_ledger"]
    for block in (q2["metrics"][PREVIOUS], q2["metrics"]["federated"]):
        # a partner whose noisy held-out count falls below 50 is suppressed (charged, no values)
        assert block["partners"] + block["partners_suppressed"] == PARTNERS
    assert PREVIOUS in q2["curves"] and "calibration" in q2["curves"][PREVIOUS]

    recal = q2["recalibration"]
    history = json.loads((tmp_path / "q2" / HISTORY_FILE).read_text())["models"]
    assert [e["window"]["cutoff"] for e in history] == ["2025-03-31", "2025-06-30"]
    assert history == recal["history"]
    # each quarter's epsilon and the lifetime come from the ledger, at the budget's delta (1e-5 here, the jobs' 1e-6):
    # the lifetime is the ledger's composition of exactly the two quarters' events (nothing else), above each
    assert all(e["from_ledger"] for e in history)
    quarters = [e["epsilon_charged"] for e in history]
    assert recal["quarters_epsilon_sum"] == pytest.approx(sum(quarters))
    assert quarters[1] < q2["privacy"]["ledger_epsilon_charged_this_job"]  # a larger delta, a smaller epsilon
    for pid, lifetime in recal["lifetime_epsilon"].items():
        assert lifetime == pytest.approx(ledger.status(pid).epsilon_spent, rel=1e-4)
        both = ledger.job_events(pid, "q1") + ledger.job_events(pid, "q2")
        assert lifetime == pytest.approx(compose_epsilon(both, ledger.status(pid).delta), rel=1e-6)
        assert lifetime >= max(quarters) - 1e-6
    assert recal["drift"]["words"]
    ledger.engine.dispose()


def test_the_job_is_checked_before_any_folder_is_written(tmp_path):
    """``simulate``/``job run`` call the task's check first: a bad --recalibrate-from is exit 2, nothing written."""
    from fedinsight.federation.job import JobSettings
    from fedinsight.tasks.propensity.options import PropensityOptions

    folder = _bundle(tmp_path / "q1", Q1)
    job = JobSettings(task="propensity", partners=3)
    TASK.check(PropensityOptions(recalibrate_from=str(folder)), job)  # window given later by the dataset: fine
    with pytest.raises(ConfigError, match="no new data"):
        TASK.check(PropensityOptions(recalibrate_from=str(folder), start="2024-01-01", cutoff="2025-01-31",
                                     end="2025-04-30"), job)
    with pytest.raises(ConfigError, match="drop --no-evaluate"):
        PropensityOptions(recalibrate_from=str(folder), evaluate=False).validate()


def test_the_report_says_the_drift_in_words_and_lists_the_history():
    from fedinsight.tasks.propensity.report import propensity_sections

    old = {"calibration": {"n": [100.0], "predicted": [0.4], "observed": [0.2]}}
    new = {"calibration": {"n": [100.0], "predicted": [0.21], "observed": [0.2]}}
    d = drift({"ece": 0.12, "tier_accuracy": 0.55}, {"ece": 0.03, "tier_accuracy": 0.63}, Q1, Q2, old, new)
    history = [{"window": {"start": "2024-01-01", "cutoff": "2025-03-31", "end": "2025-06-30"},
                "warm_started_from": None, "epsilon_charged": 1.0, "metrics": {"ece": 0.04, "tier_accuracy": 0.6},
                "lifetime_epsilon": {"p": 1.0}},
               {"window": {"start": "2024-04-01", "cutoff": "2025-06-30", "end": "2025-09-30"},
                "warm_started_from": "runs/q1", "epsilon_charged": 0.5, "metrics": {"ece": 0.03, "tier_accuracy": 0.63},
                "lifetime_epsilon": {"p": 1.3}}]
    summary = {"metrics": {"federated": {"ece": 0.03}}, "privacy": {}, "recalibration": {
        "drift": d, "history": history, "lifetime_epsilon_max": 1.3, "quarters_epsilon_sum": 1.5}}
    cards, sections = propensity_sections(summary)
    html = "".join(part for s in sections if s.id == "recalibration" for part in s.parts)
    assert d["words"] in html.replace("&#x27;", "'") and "2025-06-30" in html and "warm start" in html
    assert any("calibration drift" in c and "+20% → +1%" in c for c in cards)
