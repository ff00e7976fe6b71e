"""Serving on a partner's own data: the private default, every customer at once, cold start, catalogues
without genres -- on a federation nobody here named (``華東 retail``, ``shop-us``, ``bank_eu``), with customers
who refused consent and customers erased with ``partner forget``.

Expectations are computed from the partners' raw files, not through the code under test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import support.federations as federations
from dp_accounting import dp_event
from support.federations import PARTNER_NAMES, own_federation, raw_frames, run_in_process

from fedinsight.cli import main
from fedinsight.core.errors import UnknownCustomerError
from fedinsight.federation import delta as deltas
from fedinsight.partner.side import open_partner
from fedinsight.privacy.ledger import PrivacyLedger, compose_epsilon
from fedinsight.tasks.recommend.options import DEFAULT_EPSILON, RecommendOptions
from fedinsight.tasks.recommend.report import recommend_sections
from fedinsight.tasks.recommend.serving import POPULAR, PartnerServer, recommend_items
from fedinsight.tasks.recommend.state import customer_state_name, load_customer_state

K = 5


def _quick(task: str, federation) -> dict:  # noqa: ANN001
    """The recommender's small settings without an epsilon: the job runs at the default."""
    options = dict(ORIGINAL(task, federation))
    if task == "recommend":
        options = {k: v for k, v in options.items() if k not in ("epsilon", "popularity-share")}
        options["rounds"] = 2
    return options


ORIGINAL = federations.task_options


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return own_federation(tmp_path_factory.mktemp("own-serving") / "partners")


@pytest.fixture(scope="module")
def default_run(federation, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec-default")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(federations, "task_options", _quick)
        run = run_in_process("recommend", federation, out)
    return run, out


def _expected_customers(federation, partner: str) -> set[str]:  # noqa: ANN001
    """Raw ids of customers who consent (the synthetic data's one consent column) and were not erased."""
    customers = raw_frames(federation, partner)["customers"]
    consenting = customers.loc[customers["consent"].str.lower() == "true", "customer_id"]
    return set(consenting) - set(federation.erased[partner])


def _batch(federation, out, partner: str, tmp_path, suffix: str = ".parquet") -> pd.DataFrame:  # noqa: ANN001
    path = tmp_path / f"{partner}{suffix}"
    code = main(["recommend", "--model", str(out / "model"), "--partner-data", str(federation.folder(partner)),
                 "--all", "--out", str(path), "--k", str(K), "--json"])
    assert code == 0
    return pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, dtype={"customer_id": str})


def test_the_default_epsilon_is_finite_and_charged_on_every_ledger(default_run):
    run, out = default_run
    assert math.isfinite(RecommendOptions().epsilon) and RecommendOptions().epsilon == DEFAULT_EPSILON
    privacy = run.summary["privacy"]
    assert privacy["private"] is True and privacy["epsilon_target"] == DEFAULT_EPSILON
    assert run.summary["settings"]["local_epochs"] == 1 and run.summary["settings"]["personalize_epochs"] == 50
    # the default delta, recorded with its rule: 1e-6 here (far below 1 / (10 x the largest partner's customers))
    assert privacy["delta"] == 1e-6 and privacy["delta_rule"] == deltas.RULE_DEFAULT
    assert privacy["evaluation"]["releases"] == 1 and privacy["evaluation"]["share"] == 0.1
    coordinator = PrivacyLedger(f"sqlite:///{out / 'ledger.db'}")
    own = PrivacyLedger(f"sqlite:///{out / 'partners.db'}")
    for partner in PARTNER_NAMES:
        assert 0 < coordinator.status(partner).epsilon_spent <= DEFAULT_EPSILON + 1e-9
        # the partner's own gate spent it too (composed at the job's delta; its ledger's own delta is another's)
        events = own.job_events(partner, run.summary["job_id"])
        # training (popularity release + DP-SGD steps) and the final evaluation release
        assert len(events) == 3 and 0 < compose_epsilon(events, privacy["delta"]) <= DEFAULT_EPSILON + 1e-9
        assert events[-1] == dp_event.GaussianDpEvent(events[-1].noise_multiplier)


def test_batch_output_is_every_consenting_non_erased_customer_by_own_id_and_never_a_seen_item(
        federation, default_run, tmp_path, capsys):
    _run, out = default_run
    for partner in PARTNER_NAMES:
        frame = _batch(federation, out, partner, tmp_path)
        printed = json.loads(capsys.readouterr().out)
        expected = _expected_customers(federation, partner)
        assert set(frame["customer_id"]) == expected  # exactly: nobody missing, nobody extra
        assert not set(frame["customer_id"]) & set(federation.excluded[partner])
        assert all(c.startswith("member-") for c in frame["customer_id"])  # the partner's own ids, not tokens
        assert printed["customers"] == len(expected) and printed["rows"] == len(frame) == K * len(expected)
        assert all(ranks == list(range(1, K + 1)) for ranks in frame.groupby("customer_id")["rank"].apply(list))
        assert list(frame["customer_id"]) == sorted(frame["customer_id"])  # ordered by the partner's own ids
        seen = raw_frames(federation, partner)["interactions"][["customer_id", "item_id"]]
        hits = frame.merge(seen, on=["customer_id", "item_id"])
        assert hits.empty, hits.head()
        assert set(frame["source"]) == {"personal", POPULAR}


def test_batch_csv_holds_the_same_lists_as_parquet(federation, default_run, tmp_path):
    _run, out = default_run
    partner = PARTNER_NAMES[1]
    parquet = _batch(federation, out, partner, tmp_path)
    csv = _batch(federation, out, partner, tmp_path, ".csv")
    assert list(csv["customer_id"]) == list(parquet["customer_id"])
    assert list(csv["item_id"].astype(str)) == list(parquet["item_id"])
    assert list(csv["source"]) == list(parquet["source"].astype(str))


def test_batch_and_one_customer_give_the_same_list(federation, default_run, tmp_path):
    _run, out = default_run
    partner = PARTNER_NAMES[0]
    server = PartnerServer(out / "model", open_partner(federation.folder(partner), "recommendation"))
    frame = server.recommend_all(K)
    for customer in frame["customer_id"].drop_duplicates().iloc[::37]:
        rows = frame.loc[frame["customer_id"] == customer]
        one = recommend_items(out / "model", open_partner(federation.folder(partner), "recommendation"), customer, k=K)
        assert [r.item_id for r in one] == list(rows["item_id"])
        assert [r.source for r in one] == list(rows["source"].astype(str))
        assert [r.exploration for r in one] == list(rows["exploration"])
        assert np.allclose([r.score for r in one], rows["score"], rtol=1e-5)


def test_cold_start_customers_get_the_popular_items_of_their_own_segment(federation, default_run, tmp_path):
    run, out = default_run
    partner = PARTNER_NAMES[0]
    frame = _batch(federation, out, partner, tmp_path)
    raw = raw_frames(federation, partner)
    allowed = _expected_customers(federation, partner)
    customers = raw["customers"].loc[raw["customers"]["customer_id"].isin(allowed)].set_index("customer_id")
    catalogue = set(pd.read_parquet(federation.catalogue)["item_id"].astype(str))
    inter = raw["interactions"].loc[raw["interactions"]["customer_id"].isin(allowed)
                                    & raw["interactions"]["item_id"].isin(catalogue)].drop_duplicates(
        ["customer_id", "item_id"])
    counts = inter.groupby("customer_id").size().reindex(customers.index, fill_value=0)
    cold = counts.index[counts < 2]
    assert len(cold) > 10 and (counts[cold] == 0).any()  # some with one interaction, some with none
    sources = frame.drop_duplicates("customer_id").set_index("customer_id")["source"]
    assert (sources[cold] == POPULAR).all()
    assert (sources.drop(cold) == "personal").all()  # everyone with >= 2 interactions had an embedding
    region = customers["region"]
    active = region[counts.index[counts > 0]]
    labels = set()
    for customer in cold[:40]:
        own = region[customer]
        big = (active == own).sum() >= 20
        label = f"region={own}" if big else "all customers"
        rows = frame.loc[frame["customer_id"] == customer]
        assert set(rows["segment"]) == {label}
        labels.add(label)
        pool = inter.loc[inter["customer_id"].map(region) == own] if big else inter
        members = pool["customer_id"].nunique()
        popular = pool.groupby("item_id")["customer_id"].nunique()
        seen = set(inter.loc[inter["customer_id"] == customer, "item_id"])
        ranked = popular.drop(list(seen & set(popular.index))).reset_index().sort_values(
            ["customer_id", "item_id"], ascending=[False, True])  # most customers first, then catalogue order
        assert list(rows["item_id"]) == list(ranked["item_id"].iloc[:K]), customer
        assert np.allclose(rows["score"], ranked["customer_id"].iloc[:K] / members, rtol=1e-5)
        assert not rows["exploration"].any()
    assert len({label for label in labels if label.startswith("region=")}) >= 3  # really per segment


def test_a_customer_the_partner_cannot_serve_is_one_clear_error_exit_2(federation, default_run, tmp_path, capsys):
    _run, out = default_run
    partner = PARTNER_NAMES[2]
    folder = str(federation.folder(partner))
    for customer in ("no-such-customer", federation.opted_out[partner][0], federation.erased[partner][0]):
        assert main(["recommend", "--model", str(out / "model"), "--partner-data", folder, "--customer", customer]) == 2
        err = capsys.readouterr().err
        assert f"customer '{customer}' cannot be served" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        with pytest.raises(UnknownCustomerError):
            recommend_items(out / "model", open_partner(folder, "recommendation"), customer)
    for bad, message in ((["--all"], "pass --out FILE ending in .parquet or .csv"),
                         (["--all", "--out", str(tmp_path / "recs.txt")], "ending in .parquet or .csv"),
                         ([], "say whom to serve"),
                         (["--customer", "x", "--out", str(tmp_path / "r.csv")], "--out goes with --all"),
                         (["--all", "--out", str(tmp_path / "r.csv"), "--segment", "shoe_size"],
                          "--segment shoe_size")):
        assert main(["recommend", "--model", str(out / "model"), "--partner-data", folder, *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not list(tmp_path.glob("*recs*")) and not list(tmp_path.glob("*r.csv*"))  # nothing half-written


def test_a_customer_erased_after_training_is_never_served_though_the_state_holds_them(tmp_path):
    from fedinsight.partner.erasure import forget_customers
    from fedinsight.partner.policy import find_policy

    federation = own_federation(tmp_path / "partners", customers=900, seed=11)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(federations, "task_options", _quick)
        run = run_in_process("recommend", federation, tmp_path / "out")
    partner = PARTNER_NAMES[1]
    folder = federation.folder(partner)
    before = PartnerServer(tmp_path / "out" / "model", open_partner(folder, "recommendation")).recommend_all(K)
    customer = before.loc[before["source"] == "personal", "customer_id"].iloc[0]
    forget_customers([customer], find_policy(folder), note="after training")
    side = open_partner(folder, "recommendation")
    state = load_customer_state(side.vault, customer_state_name(run.summary["job_id"]))
    assert side.token(customer) in state.customer_ids  # the stored embedding is still there ...
    after = PartnerServer(tmp_path / "out" / "model", side).recommend_all(K)
    assert customer not in set(after["customer_id"])  # ... but the view no longer gives the customer
    assert set(after["customer_id"]) == set(before["customer_id"]) - {customer}
    with pytest.raises(UnknownCustomerError, match="or it was erased"):
        recommend_items(tmp_path / "out" / "model", side, customer)


# --- a catalogue without genres or category ----------------------------------------------------------

@pytest.fixture(scope="module")
def bare_run(federation, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec-bare")
    bare = out / "catalogue-bare.parquet"
    pd.read_parquet(federation.catalogue).drop(columns=["genres", "category"]).to_parquet(bare, index=False)
    return run_in_process("recommend", federation, out, **{"catalogue-path": str(bare), "explore": 0.2,
                                                           "eval-metrics": "all"}), out


def test_a_catalogue_without_genres_trains_reports_diversity_unavailable_and_serves(federation, bare_run):
    run, out = bare_run
    summary = run.summary
    assert summary["catalogue"]["attribute"] is None
    assert summary["catalogue"]["diversity"].startswith("unavailable: the catalogue has neither a genres nor")
    assert "popularity-based" in summary["catalogue"]["exploration"]
    fed = summary["metrics"]["federated"]
    assert fed["ild"] is None and fed["explore"]["ild"] is None and fed["explore"]["ild_gain"] is None
    assert 0 <= fed["hr@10"] <= 1
    cards, sections = recommend_sections(summary)
    html = "".join(cards) + "".join(s.html() for s in sections)
    assert "diversity unavailable" in html and "Intra-list diversity: unavailable" in html
    partner = PARTNER_NAMES[1]
    side = open_partner(federation.folder(partner), "recommendation")
    frame = PartnerServer(out / "model", side).recommend_all(K)
    customer = frame.loc[frame["source"] == "personal", "customer_id"].iloc[0]
    recs = recommend_items(out / "model", side, customer, k=K, explore=0.4)
    assert len(recs) == K and all(r.attributes == "" for r in recs)
    assert sum(r.exploration for r in recs) <= 2  # popularity-based exploration slots, no error


def test_a_category_only_catalogue_measures_diversity_by_category(tmp_path):
    from fedinsight.models.ranking import Catalogue

    items = pd.DataFrame({"item_id": ["a", "b", "c"], "category": ["shoes", "bags|belts", None], "genres": None})
    catalogue = Catalogue.from_items(items)
    assert catalogue.attribute == "category" and catalogue.attribute_values == ("bags|belts", "shoes")
    assert catalogue.diversity_text().endswith("the items' category")
    assert Catalogue.from_items(items.drop(columns=["category"])).attribute is None


def test_the_simulation_baselines_run_on_a_catalogue_without_genres(federation, bare_run):
    from fedinsight.models.ranking import Catalogue
    from fedinsight.partner.view import PartnerView
    from fedinsight.tasks.recommend.simulate import baselines

    _run, out = bare_run
    catalogue = Catalogue.from_items(pd.read_parquet(out / "catalogue-bare.parquet"))
    views = {p: PartnerView(federation.folder(p), "recommendation").tables() for p in PARTNER_NAMES}
    options = RecommendOptions(baseline_epochs=1, dim=8, explore=0.2, catalogue_path="unused")
    metrics, _ = baselines(views, catalogue, options)
    for model in ("popularity", "centralized", "local_only"):
        assert metrics[model]["ild"] is None and 0 <= metrics[model]["hr@10"] <= 1


def test_personal_lists_are_the_blend_each_partner_chose_of_its_federated_and_alone_scores(federation, default_run):
    """Serving uses the blend the partner chose at the end of the job (joining never hurts): recomputed here from
    the sealed state and the partner's own interactions, the top-k without exploration is the same list."""
    from fedinsight.models.alone import ease_weights, history_matrix
    from fedinsight.models.blend import WEIGHTS, blend
    from fedinsight.models.ranking import InteractionSplit

    run, out = default_run
    checked = 0
    for partner in PARTNER_NAMES:
        side = open_partner(federation.folder(partner), "recommendation")
        state = load_customer_state(side.vault, customer_state_name(run.summary["job_id"]))
        weight = float(state.blend["weight"])
        assert weight in WEIGHTS and state.blend["alone"] in ("item-item", "mf", None)
        server = PartnerServer(out / "model", side, explore=0.0)
        positions = np.flatnonzero(server.state_row >= 0)[:25]
        rows = server.state_row[positions]
        table = state.personal_items if state.personal_items is not None else None
        assert table is not None  # private default: partners personalise
        scores = state.embeddings[rows] @ table[:, :-1].T + table[:, -1]
        catalogue = server.model.catalogue
        histories = InteractionSplit(tuple(server.tokens), server.indptr, server.seen, np.zeros(len(server.tokens)))
        if state.blend["alone"] == "mf":
            alone = state.alone_embeddings[rows] @ state.alone_items[:, :-1].T + state.alone_items[:, -1]
        elif state.blend["alone"] == "item-item":
            weights = ease_weights(histories, catalogue.num_items, float(state.blend["lambda"]))
            alone = history_matrix(histories, catalogue.num_items, positions) @ weights
        if state.blend["alone"] is not None and weight < 1.0:
            scores = blend(scores, alone, weight)
        for r, position in enumerate(positions):
            scores[r, histories.items_of(int(position))] = -np.inf  # seen items are never recommended
        best = -np.sort(-scores, axis=1)[:, :K]  # compared by score: equal scores may come in any order
        served = np.take_along_axis(scores, server.rank(positions, K)["items"], axis=1)
        assert np.allclose(served, best, rtol=1e-5, atol=1e-5)
        checked += 1
    assert checked == len(PARTNER_NAMES)
