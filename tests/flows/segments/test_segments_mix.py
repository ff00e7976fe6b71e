"""Channel and category mix features: a customer's share of purchases in each declared (public) name."""

from __future__ import annotations

import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.tasks.segments.features import customer_vectors, describe, feature, parse_features
from fedinsight.tasks.segments.options import SegmentsOptions

AS_OF = "2026-01-01"


def _tx() -> pd.DataFrame:
    rows = [("a", "2025-12-01", 10.0, "app", "books"), ("a", "2025-12-02", 10.0, "app", "toys"),
            ("a", "2025-12-03", 10.0, " web ", "books"), ("a", "2025-12-04", 10.0, "kiosk", None),
            ("a", "2026-02-01", 10.0, "web", "books"),  # after the reference date: not counted
            ("b", "2025-11-01", 5.0, None, "garden")]
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "channel", "category"])


def test_shares_count_only_declared_names_before_the_reference_date():
    names = parse_features("frequency,channel-mix,category:books", "app,web", "books,toys")
    assert names == ("frequency", "channel:app", "channel:web", "category:books")
    v = customer_vectors(_tx(), AS_OF, names)
    assert v.loc["a", ["channel:app", "channel:web", "category:books"]].tolist() == [0.5, 0.25, 0.5]
    # b: no channel, an undeclared category: counts in no share
    assert v.loc["b", ["channel:app", "channel:web", "category:books"]].tolist() == [0.0, 0.0, 0.0]
    assert ((v >= 0) & (v <= 1)).all().all()


def test_the_shares_keep_the_vector_in_the_unit_cube_so_the_sum_bound_and_charge_are_unchanged():
    options = SegmentsOptions(features="recency,frequency,monetary,channel-mix,category:books",
                              channels="app,web,store", categories="books")
    plain = SegmentsOptions(features="recency,frequency,monetary,basket,tenure,evening,frequency")
    assert options.dim == 7 and options.sum_bound == pytest.approx(7 ** 0.5)
    assert options.noise() == plain.noise()  # the charge depends on epsilon/delta/iterations, not on the features


def test_words_for_a_mostly_app_books_buyer():
    assert describe([0.8, 0.6], ("channel:app", "category:books")) == "mostly app, books buyer"
    assert describe([0.1, 0.3], ("channel:app", "category:books")) == "rarely app, some books"
    assert feature("channel:app").share and feature("channel:app").cap == 1.0


@pytest.mark.parametrize(("features", "channels", "categories", "match"), [
    ("recency,channel:app", "", "", "not in --channels"),
    ("recency,channel:app", "web,store", "", "not in --channels"),
    ("recency,category-mix", "", "", "--categories"),
    ("recency", " , ", "", "--channels: no name"),
    ("recency", "app," + "x" * 41, "", "at most 40 characters"),
    ("recency", "", "a:b", "without ':'"),
    ("recency", ",".join(f"c{i}" for i in range(13)), "", "at most 12 names"),
    ("recency,colour:red", "", "", "unknown 'colour:red'"),
])
def test_bad_declarations_are_one_config_error(features, channels, categories, match):
    with pytest.raises(ConfigError, match=match):
        SegmentsOptions(features=features, channels=channels, categories=categories).validate()


def test_a_partner_without_a_channel_column_is_told_which_column_to_map():
    with pytest.raises(ConfigError, match="'channel' column"):
        customer_vectors(_tx().drop(columns="channel"), AS_OF, ("channel:app",))


def test_funnel_depth_is_the_deepest_stage_before_the_reference_date_scaled_to_the_unit_interval():
    events = pd.DataFrame([("a", "2025-10-01", "exposure"), ("a", "2025-10-02", "Click"),
                           ("a", "2026-03-01", "convert"),  # after the reference date: not counted
                           ("b", "2025-10-01", "participate"), ("b", "2025-10-05", "click"),
                           ("x", "2025-10-01", "convert")],  # no purchase: not segmented
                          columns=["customer_id", "timestamp", "stage"])
    v = customer_vectors(_tx(), AS_OF, ("frequency", "funnel"), events=events)
    assert v["funnel"].to_dict() == pytest.approx({"a": 1 / 3, "b": 2 / 3})
    assert describe([0.0, 0.9], ("frequency", "funnel")).endswith("converters")
    with pytest.raises(ConfigError, match="events table"):
        customer_vectors(_tx(), AS_OF, ("funnel",))


def test_a_model_file_with_mix_features_loads_and_one_with_a_wrong_cap_is_refused(tmp_path):
    import json

    from fedinsight.tasks.segments.export import KIND, load_model

    model = {"kind": KIND, "version": 1, "as_of": AS_OF, "features": ["channel:app", "funnel"],
             "caps": {"channel:app": 1.0, "funnel": 1.0}, "centres": [[0.1, 0.2], [0.8, 0.9]], "words": ["", ""]}
    (tmp_path / "ok.json").write_text(json.dumps(model))
    assert load_model(tmp_path / "ok.json")["features"] == ["channel:app", "funnel"]
    (tmp_path / "bad.json").write_text(json.dumps({**model, "caps": {"channel:app": 2.0, "funnel": 1.0}}))
    with pytest.raises(ConfigError, match="features or caps"):
        load_model(tmp_path / "bad.json")
