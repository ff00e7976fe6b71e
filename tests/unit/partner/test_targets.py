"""`fedinsight partner export targets`: who is on a partner's contact list, in which ids, and what is refused.

The model is a fixed (untrained) propensity network with the exports' time window: which customers may appear
and how they are identified does not depend on how well it was trained.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from support.exports import write_cn_export, write_us_export

from fedinsight.cli import main
from fedinsight.core.errors import ConfigError
from fedinsight.models.propensity import ModelBundle, SharedScaler, TargetScaler, build_model, get_weights
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.targets import Top
from fedinsight.partner.vault import PartnerVault
from fedinsight.tasks.propensity.features import FEATURES, FeatureCaps, LabelWindow

WINDOW = LabelWindow(pd.Timestamp("2024-07-01"), pd.Timestamp("2025-07-01"), pd.Timestamp("2025-12-31"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    n = len(FEATURES)
    ModelBundle(kind="mlp", features=FEATURES, weights=get_weights(build_model(n, "mlp", 3)),
                scaler=SharedScaler((0.0,) * n, (1.0,) * n), target=TargetScaler(0.35, FeatureCaps().log_unit),
                tier_thresholds=(5.0, 50.0), config={**WINDOW.to_config(), **FeatureCaps().to_config()}).save(path)
    return path


def _export(tmp_path, style: str, erase: int = 3):
    export = (write_cn_export if style == "cn" else write_us_export)(tmp_path / f"{style} shop", customers=200)
    init_partner(export.folder)
    consenting = set(export.expected["customers"].query("consent")["customer_id"])
    buyers = export.expected["transactions"]["customer_id"]
    erased = buyers[buyers.isin(consenting)].value_counts().index[:erase].tolist()  # frequent buyers: scored
    forget_customers(erased, find_policy(export.folder), note="test")
    return export, erased


def _run(model, folder, out, *extra: str) -> int:
    return main(["partner", "export", "targets", "--model", str(model), "--partner-data", str(folder),
                 "--out", str(out), *extra])


@pytest.mark.parametrize("style", ["cn", "us"])
def test_only_consenting_customers_who_were_not_erased_in_their_own_ids(tmp_path, model, style):
    export, erased = _export(tmp_path, style)
    out = tmp_path / "targets.csv"
    assert _run(model, export.folder, out, "--top", "100%", "--purpose", "analytics") == 0
    targets = pd.read_csv(out, dtype={"customer_id": str, "contact": str})
    own = set(export.expected["customers"]["customer_id"])
    listed = set(targets["customer_id"])
    assert listed and listed <= own  # the partner's own ids (会员手机号 / e-mail), never tokens
    assert not listed & set(export.opted_out) and not listed & set(erased)
    assert targets["rank"].tolist() == list(range(1, len(targets) + 1))
    assert targets["propensity"].is_monotonic_decreasing
    assert set(targets["ltv_tier"]) <= {"low", "mid", "high"}
    if style == "us":  # keyed by e-mail: the id is the contact
        assert (targets["contact"] == targets["customer_id"]).all()
    else:  # the order lines' 邮箱 of that member
        lines = pd.concat(pd.read_csv(export.folder / f, encoding="gb18030", dtype=str)
                          for f in export.files["transactions"])
        email = lines.drop_duplicates("会员手机号").set_index("会员手机号")["邮箱"]
        assert (targets["contact"] == targets["customer_id"].map(email)).all()


def test_top_share_is_rounded_up_and_a_count_is_exact(tmp_path, model):
    export, _ = _export(tmp_path, "us", erase=0)
    every = tmp_path / "all.csv"
    assert _run(model, export.folder, every, "--top", "100%", "--purpose", "training") == 0
    scored = len(pd.read_csv(every))
    for top, expected in (("20%", math.ceil(scored * 20 / 100)), ("33.3%", math.ceil(scored * 333 / 1000)),
                          ("7", 7), (str(scored + 50), scored)):
        out = tmp_path / f"top-{top.rstrip('%')}.parquet"
        assert _run(model, export.folder, out, "--top", top, "--purpose", "training") == 0
        head = pd.read_parquet(out)
        assert len(head) == expected, top
        full = pd.read_csv(every, dtype={"customer_id": str})
        assert head["customer_id"].tolist() == full["customer_id"].head(expected).tolist()  # the best ones


def test_top_parses_shares_and_counts():
    assert Top.parse("20%").of(10) == 2 and Top.parse("20%").of(11) == 3 and Top.parse("20%").of(1) == 1
    assert Top.parse("500").of(120) == 120 and Top.parse(" 3 ").of(120) == 3
    for bad in ("0%", "120%", "abc", "-5", "0", "1.5", "nan%", ""):
        with pytest.raises(ConfigError, match="--top"):
            Top.parse(bad)


def test_mistakes_are_refused_with_exit_2_and_nothing_written(tmp_path, model, capsys):
    export, _ = _export(tmp_path, "us", erase=0)
    out = tmp_path / "targets.csv"
    assert _run(model, export.folder, out, "--top", "20%", "--purpose", "astrology") == 2
    assert "analytics, training, recommendation, marketing" in capsys.readouterr().err
    assert _run(model, export.folder, out, "--top", "twenty", "--purpose", "analytics") == 2
    assert "--top" in capsys.readouterr().err
    assert _run(model, export.folder, tmp_path / "targets.xlsx", "--top", "20%", "--purpose", "analytics") == 2
    assert _run(model, export.folder, out, "--top", "20%", "--purpose", "analytics", "--contact", "Fax") == 2
    assert "Fax" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == []  # not even a partial file
    out.write_text("keep me\n")
    assert _run(model, export.folder, out, "--top", "20%", "--purpose", "analytics") == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert _run(model, export.folder, out, "--top", "20%", "--purpose", "analytics", "--force") == 0
    assert "customer_id" in out.read_text()


def test_contact_column_override_and_ids_only_without_one(tmp_path, model, capsys):
    export, _ = _export(tmp_path, "us", erase=0)
    out = tmp_path / "phones.csv"
    assert _run(model, export.folder, out, "--top", "10", "--purpose", "analytics", "--contact", "Phone") == 0
    phones = pd.read_csv(export.folder / "customers_export.csv", dtype=str).set_index("Email")["Phone"]
    targets = pd.read_csv(out, dtype=str)
    assert (targets["contact"] == targets["customer_id"].map(phones)).all()
    # canonical files without any e-mail or phone column: ids only, and said so
    plain = tmp_path / "plain"
    plain.mkdir()
    ids = {c: f"M{i:05d}" for i, c in enumerate(export.expected["customers"]["customer_id"])}
    for table in ("customers", "transactions"):
        frame = export.expected[table].assign(customer_id=lambda f: f["customer_id"].map(ids))
        frame.to_csv(plain / f"{table}.csv", index=False)
    init_partner(plain)
    capsys.readouterr()
    out = tmp_path / "ids.csv"
    assert _run(model, plain, out, "--top", "10", "--purpose", "analytics") == 0
    assert "ids only" in capsys.readouterr().out
    targets = pd.read_csv(out, dtype=str)
    assert "contact" not in targets.columns and targets["customer_id"].str.startswith("M").all()


def test_the_python_api_gives_the_same_list_as_the_command(tmp_path, model):
    from fedinsight.simulation.partners import Partners
    from fedinsight.simulation.results import PropensityModel

    export, erased = _export(tmp_path / "partners", "cn")
    out = tmp_path / "targets.csv"
    assert _run(model, export.folder, out, "--top", "25", "--purpose", "recommendation") == 0
    frame = PropensityModel(model, Partners(tmp_path / "partners", "own", False)).targets(
        export.folder.name, top=25, purpose="recommendation")
    written = pd.read_csv(out, dtype={"customer_id": str, "contact": str})
    assert frame["customer_id"].tolist() == written["customer_id"].tolist() and len(frame) == 25
    assert not set(frame["customer_id"]) & set(erased + export.opted_out)
    with pytest.raises(ConfigError, match="analytics, training, recommendation, marketing"):
        PropensityModel(model, Partners(tmp_path / "partners", "own", False)).targets(export.folder.name,
                                                                                    purpose="astrology")


def test_recommended_items_only_for_customers_who_consent_to_recommendations(tmp_path, model):
    import json

    import numpy as np

    from fedinsight.privacy.tokenize import Tokenizer
    from fedinsight.tasks.recommend.state import CustomerState, customer_state_name, save_customer_state

    export = write_us_export(tmp_path / "us", customers=120)
    folder = tmp_path / "shop"
    folder.mkdir()
    ids = {c: f"M{i:05d}" for i, c in enumerate(export.expected["customers"]["customer_id"])}
    customers = export.expected["customers"].assign(customer_id=lambda f: f["customer_id"].map(ids), consent=True)
    refused = set(customers["customer_id"][::3])  # every third customer refuses recommendations only
    customers["consent_recommendation"] = ~customers["customer_id"].isin(refused)
    customers.to_csv(folder / "customers.csv", index=False)
    export.expected["transactions"].assign(customer_id=lambda f: f["customer_id"].map(ids)).to_csv(
        folder / "transactions.csv", index=False)
    init_partner(folder)
    # a recommender's public item model and this partner's customer state, as a recommend run leaves them
    rng = np.random.default_rng(0)
    items = tmp_path / "rec"
    items.mkdir()
    np.savez(items / "items.npz", item_ids=np.asarray([f"SKU{i}" for i in range(30)]),
             attributes=np.asarray([""] * 30), embeddings=rng.normal(size=(30, 4)).astype(np.float32),
             bias=np.zeros(30, dtype=np.float32))
    (items / "model.json").write_text(json.dumps({"job_id": "rec-1", "explore": 0.0, "attribute": None}))
    policy = find_policy(folder)
    tokens = Tokenizer(policy.tokenization_ring()).tokenize(customers["customer_id"].astype("string"))
    save_customer_state(PartnerVault(policy), customer_state_name("rec-1"),
                        CustomerState("rec-1", tuple(tokens), rng.normal(size=(len(tokens), 4)).astype(np.float32)))
    out = tmp_path / "targets.csv"
    assert _run(model, folder, out, "--top", "100%", "--purpose", "analytics", "--recommender", str(items),
                "--k", "3") == 0
    targets = pd.read_csv(out, dtype=str, keep_default_na=False)
    served = targets["recommended_items"].ne("")
    assert targets["customer_id"].isin(refused).any()  # on the list: they consent to analytics and training
    assert not served[targets["customer_id"].isin(refused)].any()  # but nothing recommended to them
    assert served[~targets["customer_id"].isin(refused)].all()
    assert targets.loc[served, "recommended_items"].str.split("|").map(len).eq(3).all()
