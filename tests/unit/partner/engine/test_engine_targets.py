"""`partner export targets` reads through the partner's engine: its scores and its in-scope customers equal the
pandas path's (the one it replaced, kept here as the reference) customer for customer and to the last bit, on a
plain CSV partner and on a mapped folder, for the purposes a list is made for; opted-out and erased customers are
in neither; and a whole list is built with ``data()`` failing.

The model is a fixed (untrained) propensity network: equality of the two paths does not depend on its training.
"""

from __future__ import annotations

import pandas as pd
import pytest
from support.engine_data import ERASED, OPTED_OUT, own_tables, write_csv_partner
from support.exports import write_us_export

from fedinsight.core.errors import DataValidationError
from fedinsight.models.propensity import ModelBundle, SharedScaler, TargetScaler, build_model, get_weights
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.side import PartnerSide, open_partner
from fedinsight.partner.targets import build_targets, view_tokens
from fedinsight.tasks.propensity.features import FEATURES, FeatureCaps, LabelWindow
from fedinsight.tasks.propensity.scoring import score_customers, score_scanned

WINDOW = LabelWindow(pd.Timestamp("2024-07-01"), pd.Timestamp("2025-07-01"), pd.Timestamp("2025-12-31"))
AS_OF = (None, "2025-03-15", "2025-03-15 13:30", "2026-05-01")  # the training cutoff, another day, mid-day, late


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ModelBundle:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    n = len(FEATURES)
    ModelBundle(kind="mlp", features=FEATURES, weights=get_weights(build_model(n, "mlp", 3)),
                scaler=SharedScaler((0.0,) * n, (1.0,) * n), target=TargetScaler(0.35, FeatureCaps().log_unit),
                tier_thresholds=(5.0, 50.0), config={**WINDOW.to_config(), **FeatureCaps().to_config()}).save(path)
    return ModelBundle.load(path)


@pytest.fixture(scope="module")
def csv_shop(tmp_path_factory):
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", own_tables(customers=120))
    forget_customers(list(ERASED), find_policy(folder), note="test")
    return folder, {c.strip() for c in (*OPTED_OUT, *ERASED)}


@pytest.fixture(scope="module")
def mapped_shop(tmp_path_factory):
    export = write_us_export(tmp_path_factory.mktemp("own") / "us shop", customers=200)
    init_partner(export.folder)
    consenting = set(export.expected["customers"].query("consent")["customer_id"])
    buyers = export.expected["transactions"]["customer_id"]
    erased = buyers[buyers.isin(consenting)].value_counts().index[:3].tolist()  # frequent buyers: would be scored
    forget_customers(erased, find_policy(export.folder), note="test")
    return export.folder, set(export.opted_out) | set(erased)


@pytest.fixture(scope="module")
def no_customers_table(tmp_path_factory):
    """Transactions and events, no customers table, missing consent allowed: the engine's ``customers`` relation
    holds the events' ids too, the list's in-scope customers only the transactions' (the pandas rule)."""
    tables = own_tables(customers=60)
    del tables["customers"]
    events = tables["events"]
    events.loc[events.index[:4], "customer_id"] = ["only-events-1", "only-events-2", "only-events-1", "only-events-3"]
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "no customers", tables)
    toml, _ = init_partner(folder)
    text = toml.read_text()
    assert text.count('missing = "deny"') == 1
    toml.write_text(text.replace('missing = "deny"', 'missing = "allow"'))
    forget_customers(list(ERASED), find_policy(folder), note="test")
    return folder, {c.strip() for c in ERASED}


def pandas_tokens(partner: PartnerSide) -> set[str]:
    """The pandas path this replaced, verbatim: the view's customers table, else its transactions' ids."""
    data = partner.data()
    if data.customers is not None:
        return set(data.customers["customer_id"].astype(str))
    return set(data.transactions["customer_id"].astype(str)) if data.transactions is not None else set()


def _excluded_tokens(partner: PartnerSide, excluded: set[str]) -> set[str]:
    return {partner.token(c) for c in excluded}


@pytest.mark.parametrize("shop", ["csv_shop", "mapped_shop"])
@pytest.mark.parametrize("purpose", ["training", "marketing"])
def test_in_scope_customers_equal_the_pandas_path(request, shop, purpose):
    folder, excluded = request.getfixturevalue(shop)
    partner = open_partner(folder, purpose)
    got = view_tokens(partner)
    assert got == pandas_tokens(partner)
    assert len(got) > 20 and not got & _excluded_tokens(partner, excluded)


def test_without_a_customers_table_only_the_transactions_customers_are_in_scope(no_customers_table):
    folder, excluded = no_customers_table
    partner = open_partner(folder, "marketing")
    got = view_tokens(partner)
    assert got == pandas_tokens(partner) and len(got) > 20
    assert not got & _excluded_tokens(partner, excluded)
    assert not got & {partner.token(f"only-events-{k}") for k in (1, 2, 3)}  # in the engine's relation, not here


@pytest.mark.parametrize("shop", ["csv_shop", "mapped_shop"])
def test_scores_equal_the_pandas_path_exactly(request, bundle, shop):
    folder, excluded = request.getfixturevalue(shop)
    partner = open_partner(folder, "training")
    transactions = partner.data().transactions
    buyers = set(transactions["customer_id"].astype(str))
    for as_of in AS_OF:
        expected = score_customers(bundle, transactions, as_of)
        got = score_scanned(bundle, partner, as_of)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), check_exact=True)
        scored = set(got["customer_id"])
        assert scored < buyers, as_of  # only customers who bought in the window: some bought outside it only
        assert not scored & _excluded_tokens(partner, excluded)


def test_bad_as_of_is_refused_in_the_same_words(bundle, csv_shop):
    partner = open_partner(csv_shop[0], "training")
    messages = []
    for run in (lambda: score_customers(bundle, partner.data().transactions, "2019-01-01"),
                lambda: score_scanned(bundle, partner, "2019-01-01"),
                lambda: score_customers(bundle, partner.data().transactions, "soon"),
                lambda: score_scanned(bundle, partner, "soon")):
        with pytest.raises(Exception) as caught:
            run()
        messages.append((type(caught.value), str(caught.value)))
    assert messages[0] == messages[1] and messages[2] == messages[3] and messages[0] != messages[2]


@pytest.fixture(scope="module")
def pandas_lists(bundle, csv_shop, mapped_shop):
    """The pandas path's lists, built before ``no_whole_tables`` (module fixtures are set up first)."""
    return {name: _reference_list(bundle, shop[0], "marketing")
            for name, shop in (("csv_shop", csv_shop), ("mapped_shop", mapped_shop))}


@pytest.mark.parametrize("shop", ["csv_shop", "mapped_shop"])
def test_a_whole_list_is_built_without_loading_a_table(request, bundle, shop, pandas_lists, no_whole_tables):
    folder, excluded = request.getfixturevalue(shop)
    reference = pandas_lists[shop]
    built = build_targets(bundle, folder, purpose="marketing", top="100%")
    pd.testing.assert_frame_equal(built.frame, reference.frame, check_exact=True)
    assert (built.scored, built.eligible) == (reference.scored, reference.eligible)
    assert len(built.frame) > 10 and not set(built.frame["customer_id"].str.strip()) & excluded


def _reference_list(bundle: ModelBundle, folder, purpose: str):  # noqa: ANN001, ANN202
    """The list as the pandas path built it: ``view_tokens`` and the scores swapped for the pandas ones."""
    import fedinsight.partner.targets as targets
    import fedinsight.tasks.propensity.scoring as scoring

    def pandas_scores(bundle, partner, as_of=None):  # noqa: ANN001, ANN202
        return score_customers(bundle, partner.data().transactions, as_of)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(targets, "view_tokens", pandas_tokens)
        patch.setattr(scoring, "score_scanned", pandas_scores)
        return build_targets(bundle, folder, purpose=purpose, top="100%")


def _bad_amount(tables: dict[str, pd.DataFrame]) -> None:
    tables["transactions"]["amount"] = tables["transactions"]["amount"].astype(object)
    tables["transactions"].loc[5, "amount"] = "twelve"


@pytest.mark.parametrize("spoil", [
    _bad_amount,
    lambda t: t["transactions"].__setitem__("timestamp", t["transactions"]["timestamp"].where(
        t["transactions"].index != 2, "yesterday")),
    lambda t: t["customers"].loc.__setitem__((3, "customer_id"), t["customers"].loc[4, "customer_id"]),
    lambda t: t["transactions"].pop("amount"),
], ids=["not a number", "not a time", "repeated id", "missing column"])
def test_bad_files_are_refused_in_the_validations_words(bundle, tmp_path, spoil):
    tables = own_tables(customers=40)
    spoil(tables)
    folder = write_csv_partner(tmp_path / "shop", tables)
    with pytest.raises(DataValidationError) as loaded:
        open_partner(folder, "training").data()  # the refusal the command gave before (its first read)
    with pytest.raises(DataValidationError) as built:
        build_targets(bundle, folder, purpose="marketing", top="10")
    assert str(built.value) == str(loaded.value)


def test_a_list_for_a_purpose_leaves_out_who_refused_that_purpose(bundle, tmp_path):
    """A customer who consents in general (and to training) but refused marketing (``consent_marketing``) is on a
    training list and on no marketing list; one who refused training is on no list (scores come from the
    propensity model: a list needs the purpose's consent and training's, the module's rule)."""
    tables = own_tables(customers=120)
    customers = tables["customers"]
    consenting = customers.loc[customers["consent"].isin(["yes", "1", "true"]), "customer_id"].tolist()
    assert len(consenting) > 40
    no_marketing, no_training = set(consenting[:15]), set(consenting[15:30])
    customers["consent_marketing"] = ["no" if c in no_marketing else "yes" for c in customers["customer_id"]]
    customers["consent_training"] = ["no" if c in no_training else "yes" for c in customers["customer_id"]]
    folder = write_csv_partner(tmp_path / "shop", tables)
    lists = {p: build_targets(bundle, folder, purpose=p, top="100%") for p in ("marketing", "training")}
    listed = {p: set(built.frame["customer_id"].str.strip()) for p, built in lists.items()}
    assert listed["marketing"] and listed["training"]
    assert not listed["marketing"] & no_marketing and listed["training"] & no_marketing  # refusers were scorable
    assert not listed["training"] & no_training and not listed["marketing"] & no_training
    for purpose, refused in (("marketing", no_marketing), ("training", no_training)):
        partner = open_partner(folder, purpose)
        assert view_tokens(partner) == pandas_tokens(partner)
        assert not view_tokens(partner) & {partner.token(c) for c in refused}
