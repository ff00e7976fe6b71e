"""Consent per purpose and erasure: who may be used, forgetting, and the full load path a task uses."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from fedinsight.cli import main
from fedinsight.core.errors import ConfigError, DataValidationError, KeyFileError, PiiDetectedError
from fedinsight.data.synth import SynthConfig, write_synthetic
from fedinsight.partner.policy import find_policy
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.protection import load_protected
from fedinsight.partner.view import PartnerView
from fedinsight.privacy.consent import consent_mask, resolve_purpose
from fedinsight.privacy.keys import load_keyring, rotate_keyring


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "data"
    write_synthetic(SynthConfig(customers=600, partners=1, seed=3, fmt="csv"), root)
    return root / "partner-0"


@pytest.fixture
def partner(synth_root, tmp_path):
    folder = tmp_path / "partner"
    shutil.copytree(synth_root, folder)
    return folder


def test_consent_mask_general_flag_purpose_overrides_and_missing_policy():
    customers = pd.DataFrame({"consent": [True, True, False, None],
                              "consent_training": ["no", None, "yes", None]})
    assert consent_mask(customers, "analytics").tolist() == [True, True, False, False]
    assert consent_mask(customers, "training").tolist() == [False, True, True, False]
    assert consent_mask(customers, "training", missing="allow").tolist() == [False, True, True, True]
    assert consent_mask(customers, None).tolist() == [False, True, False, False]  # every purpose
    no_info = pd.DataFrame({"age": [1, 2]})
    assert consent_mask(no_info, "analytics").tolist() == [False, False]
    assert consent_mask(no_info, "analytics", missing="allow").tolist() == [True, True]
    assert consent_mask(None, "analytics") is None
    with pytest.raises(DataValidationError, match="consent_training"):
        consent_mask(pd.DataFrame({"consent_training": ["maybe"]}), "training")


def test_marketing_consent_is_its_own_purpose_and_only_asked_for_by_name():
    """Being contacted with offers (target lists) is a purpose of its own: ``consent_marketing`` overrides the
    general flag, and it is not part of "every purpose" (no task computes for it)."""
    customers = pd.DataFrame({"consent": [True, True, False], "consent_marketing": ["no", None, "yes"]})
    assert consent_mask(customers, "marketing").tolist() == [False, True, True]
    assert consent_mask(customers, None).tolist() == [True, True, False]  # the tasks' purposes only
    assert consent_mask(pd.DataFrame({"consent": [True, False]}), "marketing").tolist() == [True, False]


def test_purposes_come_from_the_tasks_and_an_unknown_one_is_an_error():
    from fedinsight.federation import registry

    purposes = registry.purposes()
    assert purposes["propensity"] == "training" and purposes["recommend"] == "recommendation"
    assert purposes["insights"] == "analytics"
    assert resolve_purpose() is None and resolve_purpose("training") == "training"
    with pytest.raises(ConfigError, match="unknown purpose"):
        resolve_purpose("astrology")
    with pytest.raises(ConfigError, match="unknown purpose"):
        PartnerView(".", "astrology")


def test_task_load_refuses_undeclared_pii_then_returns_tokens_only(partner):
    raw = {t: pd.read_csv(partner / f"{t}.csv", dtype=str) for t in ("customers", "transactions", "events")}
    with pytest.raises(PiiDetectedError, match="customers.phone"):
        PartnerView(partner, "training").tables()
    init_partner(partner)
    data = PartnerView(partner, "training").tables()
    assert not {"name", "phone", "email"} & set(data.customers.columns)
    raw_ids = set(raw["customers"]["customer_id"])
    for name in ("customers", "transactions", "interactions", "events"):
        ids = set(getattr(data, name)["customer_id"])
        assert ids and not ids & raw_ids
        assert all(isinstance(i, str) and i.startswith("tk_") for i in ids)
    assert set(data.transactions["customer_id"]) <= set(data.customers["customer_id"])  # joins still work
    assert not set(data.transactions["transaction_id"]) & set(raw["transactions"]["transaction_id"])
    consenting = raw["customers"]["consent"].str.lower().eq("true").sum()
    assert len(data.customers) == consenting < len(raw["customers"])
    report = data.meta["protection"]
    assert report["purpose"] == "training" and report["excluded_no_consent"] == len(raw["customers"]) - consenting


def test_forget_excludes_customers_from_every_later_job_and_lists_artifacts(partner, tmp_path, capsys):
    init_partner(partner)
    before = PartnerView(partner, "analytics").tables()
    vault = PartnerView(partner, "analytics").vault
    vault.save_frame("scores-old", before.customers[["customer_id"]], kind="scores", job_id="job-1")
    raw = pd.read_csv(partner / "customers.csv", dtype=str)
    forgotten = raw.loc[raw["consent"].str.lower() == "true", "customer_id"].head(7).tolist()
    ids_file = tmp_path / "erase.txt"
    ids_file.write_text("customer_id\n" + "\n".join(forgotten + forgotten[:2]) + "\n")
    capsys.readouterr()
    assert main(["partner", "forget", "--customers", str(ids_file), "--data", str(partner), "--json"]) == 0
    printed = capsys.readouterr().out
    assert '"newly_forgotten": 7' in printed and "scores-old" in printed
    assert not any(i in printed for i in forgotten)
    vault.save_frame("scores-new", before.customers[["customer_id"]], kind="scores", job_id="job-2")
    stale = {a.name for a in vault.register.artifacts_before()}
    assert stale == {"scores-old"}
    for purpose in ("analytics", "training", "recommendation"):
        after = PartnerView(partner, purpose).tables()  # same process: the cache sees the erasure
        report = after.meta["protection"]
        assert report["excluded_erased"] == 7
        assert len(after.customers) == report["customers_used"]
        assert not set(after.events["customer_id"]) - set(after.customers["customer_id"])
    assert len(PartnerView(partner, "analytics").tables().customers) == len(before.customers) - 7
    db = (partner / ".fedinsight" / "partner.db").read_bytes()
    assert not any(i.encode() in db for i in forgotten)  # the register holds tokens, never ids
    assert main(["partner", "forget", "--customers", str(ids_file), "--data", str(partner), "--json"]) == 0
    assert '"newly_forgotten": 0' in capsys.readouterr().out


def test_erasure_survives_key_rotation_and_refuses_a_lost_key(partner, tmp_path):
    init_partner(partner)
    policy = find_policy(partner)
    raw = pd.read_csv(partner / "customers.csv", dtype=str)
    forgotten = raw.loc[raw["consent"].str.lower() == "true", "customer_id"].head(5)
    (tmp_path / "erase.txt").write_text("\n".join(forgotten) + "\n")
    assert main(["partner", "forget", "--customers", str(tmp_path / "erase.txt"), "--data", str(partner)]) == 0
    key_file = policy.tokenization.file
    old = load_keyring(key_file)
    rotate_keyring(key_file)
    protected = load_protected(partner)
    assert protected.key_id != old.active.key_id
    assert protected.for_purpose("analytics").meta["protection"]["excluded_erased"] == 5
    # drop the retired key: the register can no longer be matched, so nothing may run
    text = key_file.read_text()
    import json

    doc = json.loads(text)
    doc["keys"] = [k for k in doc["keys"] if k["status"] == "active"]
    key_file.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="erasure register"):
        load_protected(partner).for_purpose("analytics")


def test_partner_check_cli_reports_counts_but_no_values(partner, capsys):
    init_partner(partner)
    capsys.readouterr()
    assert main(["partner", "check", "--data", str(partner), "--purpose", "recommendation", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"purpose": "recommendation"' in out and '"customers_used"' in out
    raw = pd.read_csv(partner / "customers.csv", dtype=str)
    assert not any(v in out for v in raw["customer_id"].head(50)) and "@" not in out
    assert main(["partner", "check", "--data", str(partner), "--purpose", "sales"]) == 2


def test_consent_columns_survive_a_drop_everything_policy(partner):
    init_partner(partner)
    customers = pd.read_csv(partner / "customers.csv", dtype=str)
    customers["consent_training"] = "false"
    customers["loyalty_tier"] = "gold"
    customers.to_csv(partner / "customers.csv", index=False)
    policy = partner / "protection.toml"
    policy.write_text(policy.read_text().replace('undeclared-columns = "keep"', 'undeclared-columns = "drop"'))
    protected = load_protected(partner)
    assert "loyalty_tier" not in protected.data.customers.columns
    assert protected.for_purpose("training").meta["protection"]["customers_used"] == 0  # opted out of training
    assert protected.for_purpose("analytics").meta["protection"]["customers_used"] > 0


def test_collaboration_key_adds_link_tokens_shared_across_partners(synth_root, tmp_path):
    from fedinsight.privacy.keys import generate_keyring

    collab = generate_keyring(tmp_path / "collab.key", "collaboration")
    loaded = []
    for name in ("bank", "shop"):
        folder = tmp_path / name
        shutil.copytree(synth_root, folder)
        init_partner(folder, collaboration_key=tmp_path / "collab.key")
        loaded.append(load_protected(folder).data.customers)
    bank, shop = loaded
    assert set(bank["customer_link"]) == set(shop["customer_link"])  # same people, same link tokens ...
    assert not set(bank["customer_id"]) & set(shop["customer_id"])  # ... but unrelated partner tokens
    assert all(t.startswith("lk_") for t in bank["customer_link"]) and collab.kind == "collaboration"
