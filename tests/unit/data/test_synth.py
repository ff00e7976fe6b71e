"""The synthetic generator: determinism, partitioning, validity, and that the planted truth is visible."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import FUNNEL_STAGES, TABLES
from fedinsight.data.synth import (
    BLOCK_CUSTOMERS,
    SEGMENTS,
    SynthConfig,
    generate_partner_frames,
    write_synthetic,
)
from fedinsight.data.validate import read_table

SMALL = SynthConfig(customers=600, partners=3, seed=11, items=60)


@pytest.fixture(scope="module")
def small():
    return generate_partner_frames(SMALL)


@pytest.fixture(scope="module")
def medium():
    """Enough customers for the planted effects to stand well clear of sampling noise."""
    frames, truth = generate_partner_frames(SynthConfig(customers=40_000, partners=4, seed=3, items=200))
    combined = {name: pd.concat([f[name] for f in frames.values()], ignore_index=True) for name in TABLES}
    return frames, truth, combined


def _partner_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("partner-*/*") if p.is_file())


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_same_frames_different_seed_different(small):
    frames, truth = small
    again, truth2 = generate_partner_frames(SMALL)
    assert frames.keys() == again.keys()
    for partner in frames:
        for name in TABLES:
            pd.testing.assert_frame_equal(frames[partner][name], again[partner][name])
    pd.testing.assert_frame_equal(truth["customer_truth"], truth2["customer_truth"])
    assert {k: v for k, v in truth.items() if k != "customer_truth"} == {
        k: v for k, v in truth2.items() if k != "customer_truth"
    }

    other, other_truth = generate_partner_frames(SynthConfig(customers=600, partners=3, seed=12, items=60))
    assert not other["partner-0"]["customers"]["customer_id"].equals(frames["partner-0"]["customers"]["customer_id"])
    assert not other_truth["customer_truth"]["segment"].equals(truth["customer_truth"]["segment"])


def test_written_files_are_byte_identical_and_independent_of_chunk_size(tmp_path):
    cfg = dict(customers=BLOCK_CUSTOMERS + 700, partners=2, seed=5, items=40, fmt="csv")
    a = tmp_path / "a"
    b = tmp_path / "b"
    write_synthetic(SynthConfig(**cfg), a)
    write_synthetic(SynthConfig(**cfg, chunk_customers=1), b)  # one block per chunk: two chunks
    files_a, files_b = _partner_files(a), _partner_files(b)
    assert [p.relative_to(a) for p in files_a] == [p.relative_to(b) for p in files_b]
    assert len(files_a) == 2 * 5
    for fa, fb in zip(files_a, files_b, strict=True):
        assert fa.read_bytes() == fb.read_bytes(), fa.name
    truth_a = pd.read_parquet(a / "ground_truth" / "customer_truth.parquet")  # row groups differ
    pd.testing.assert_frame_equal(truth_a, pd.read_parquet(b / "ground_truth" / "customer_truth.parquet"))

    c = tmp_path / "c"
    write_synthetic(SynthConfig(**{**cfg, "fmt": "parquet"}), c)
    d = tmp_path / "d"
    write_synthetic(SynthConfig(**{**cfg, "fmt": "parquet"}), d)
    for fc, fd in zip(_partner_files(c), _partner_files(d), strict=True):
        assert fc.read_bytes() == fd.read_bytes(), fc.name
    assert (c / "ground_truth.json").read_bytes() == (d / "ground_truth.json").read_bytes()


# --- partitioning and identity --------------------------------------------------------------


def test_every_customer_in_exactly_one_partner(small):
    frames, truth = small
    ids = [set(f["customers"]["customer_id"]) for f in frames.values()]
    assert all(ids), "every partner must hold at least one customer"
    assert sum(len(s) for s in ids) == SMALL.customers
    assert set().union(*ids) == {f"C{i:08d}" for i in range(1, SMALL.customers + 1)}
    for partner, own in zip(frames, ids, strict=True):
        for name in ("transactions", "interactions", "events"):
            assert set(frames[partner][name]["customer_id"]) <= own, (partner, name)
        assert truth["partners"][partner]["customers"] == len(own)
    ct = truth["customer_truth"].set_index("customer_id")
    for partner, own in zip(frames, ids, strict=True):
        assert (ct.loc[sorted(own), "partner_id"] == partner).all()


def test_partners_may_equal_customers():
    frames, truth = generate_partner_frames(SynthConfig(customers=4, partners=4, seed=0, items=6))
    assert [len(f["customers"]) for f in frames.values()] == [1, 1, 1, 1]


def test_direct_identifiers_present_and_unique(small):
    frames, _ = small
    customers = pd.concat([f["customers"] for f in frames.values()])
    for col in ("name", "phone", "email"):
        assert col in customers.columns
        assert customers[col].notna().all()
    assert customers["phone"].is_unique
    assert customers["email"].is_unique
    assert customers["phone"].str.fullmatch(r"\+1-555-\d{4}-\d{4}").all()
    assert customers["email"].str.fullmatch(r"[a-z]+\.[a-z]+\.\d+@example\.com").all()
    assert customers["name"].str.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+").all()


def test_hidden_truth_not_in_partner_tables(small):
    frames, _ = small
    hidden = {"segment", "purchase_rate_per_year", "p_buy_after_cutoff", "golden_hour", "favourite_categories"}
    for tables in frames.values():
        for frame in tables.values():
            assert not hidden & set(frame.columns)


# --- validity -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_files_pass_validation_and_match_memory(tmp_path, small, fmt):
    frames, truth = small
    out = tmp_path / "synth"
    calls: list[tuple[int, int]] = []
    stats = write_synthetic(
        SynthConfig(**{**SMALL.__dict__, "fmt": fmt}), out, progress=lambda d, t: calls.append((d, t))
    )
    assert calls and calls[-1] == (SMALL.customers, SMALL.customers)
    files = _partner_files(out)
    assert {p.parent.name for p in files} == {"partner-0", "partner-1", "partner-2"}
    assert all(p.suffix == f".{fmt}" for p in files)
    for path in files:
        table = read_table(path)  # raises DataValidationError on any problem
        mem = frames[path.parent.name][path.stem]
        assert len(table) == len(mem)
        key = TABLES[path.stem].key[0]
        assert list(table[key].astype(str)) == list(mem[key].astype(str))
    assert stats["rows"]["transactions"] == sum(len(f["transactions"]) for f in frames.values()) > 0
    assert stats["rows_per_s"] > 0 and stats["seconds"] >= 0

    written = json.loads((out / "ground_truth.json").read_text())
    assert written["rows"] == stats["rows"] == truth["rows"]
    assert written["ab_lift"] == {"campaign-1": 1.3, "campaign-2": 1.0}
    assert set(written["golden_hours"]) == set(SEGMENTS)
    customer_truth = pd.read_parquet(out / "ground_truth" / "customer_truth.parquet")
    pd.testing.assert_frame_equal(customer_truth, truth["customer_truth"], check_dtype=False)
    assert not any(p.name.startswith("customer_truth") for p in files)


def test_times_and_values_in_range(small):
    frames, truth = small
    end = pd.Timestamp(SMALL.end)
    start = pd.Timestamp(SMALL.start)
    for tables in frames.values():
        tx = tables["transactions"]
        for name in ("transactions", "interactions", "events"):
            ts = tables[name]["timestamp"]
            assert (ts <= end).all() and (ts >= start).all(), name
        assert (tx["amount"] >= 0).all() and (tx["quantity"] >= 1).all()
        first = tx.groupby("customer_id")["timestamp"].min()
        signup = tables["customers"].set_index("customer_id")["signup_date"]
        assert (signup.loc[first.index] < first).all()
        assert tables["customers"]["age"].between(18, 80).all()
        assert tables["interactions"]["rating"].between(1, 5).all()
        assert not tables["interactions"].duplicated(["customer_id", "item_id", "timestamp"]).any()


# --- planted signals ------------------------------------------------------------------------


def test_funnel_is_monotone(medium):
    _, truth, combined = medium
    ev = combined["events"]
    assert ev["event_id"].is_unique
    for campaign in truth["campaigns"]:
        counts = ev[ev["campaign"] == campaign]["stage"].value_counts().reindex(FUNNEL_STAGES, fill_value=0)
        assert counts["exposure"] > 0 and counts["convert"] > 0
        assert list(counts) == sorted(counts, reverse=True), (campaign, counts.to_dict())
    # per customer and campaign: each stage is reached only after the previous one, never earlier
    wide = ev.pivot_table(index=["customer_id", "campaign"], columns="stage", values="timestamp", aggfunc="max")
    for prev, nxt in zip(FUNNEL_STAGES, FUNNEL_STAGES[1:], strict=False):
        later = wide[nxt].notna()
        assert wide.loc[later, prev].notna().all()
        assert (wide.loc[later, nxt] >= wide.loc[later, prev]).all()
    # one arm and one channel per customer and campaign
    assert (ev.groupby(["customer_id", "campaign"])[["arm", "channel"]].nunique() == 1).all().all()


def test_ab_lift_visible_in_campaign_1_only(medium):
    _, truth, combined = medium
    ev = combined["events"]
    ratios = {}
    for campaign in ("campaign-1", "campaign-2"):
        counts = ev[ev["campaign"] == campaign].groupby(["arm", "stage"]).size().unstack()
        rate = counts["convert"] / counts["participate"]
        ratios[campaign] = rate["B"] / rate["A"]
        share_b = counts.loc["B", "exposure"] / counts["exposure"].sum()
        assert 0.47 < share_b < 0.53  # 50/50 split
    assert truth["ab_lift"]["campaign-1"] == 1.3
    assert ratios["campaign-1"] > 1.1, ratios
    assert 0.8 < ratios["campaign-2"] < 1.2, ratios


def test_golden_hours_visible(medium):
    _, truth, combined = medium
    seg = truth["customer_truth"].set_index("customer_id")["segment"]
    ev = combined["events"]
    hours = ev["timestamp"].dt.hour
    segments = ev["customer_id"].map(seg)
    for segment, peak in truth["golden_hours"].items():
        observed = hours[segments == segment].value_counts().idxmax()
        assert observed == peak, (segment, observed, peak)


def test_segment_shares_and_purchase_rates(medium):
    _, truth, combined = medium
    ct = truth["customer_truth"]
    shares = ct["segment"].value_counts(normalize=True)
    for segment, share in truth["segments"]["shares"].items():
        assert abs(shares[segment] - share) < 0.02
    per_customer = combined["transactions"].groupby("customer_id").size()
    freq = ct.set_index("customer_id")["segment"].to_frame().join(per_customer.rename("n")).fillna(0)
    mean = freq.groupby("segment")["n"].mean()
    assert list(mean.sort_values(ascending=False).index) == sorted(
        SEGMENTS, key=lambda s: -truth["segments"]["purchases_per_year_mean"][s]
    )


def test_propensity_signal_auc(medium):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    _, truth, combined = medium
    cutoff = pd.Timestamp(truth["window"]["cutoff"])
    customers = combined["customers"]
    customers = customers[customers["signup_date"] < cutoff].set_index("customer_id")
    tx = combined["transactions"]
    cal = tx[tx["timestamp"] < cutoff].groupby("customer_id")["timestamp"].agg(["size", "max"])
    bought_after = set(tx.loc[tx["timestamp"] >= cutoff, "customer_id"])
    feats = customers[[]].join(cal)
    freq = feats["size"].fillna(0)
    recency_days = ((cutoff - feats["max"]).dt.total_seconds() / 86400).fillna(999)
    x = np.column_stack([np.log1p(freq), np.log1p(recency_days)])
    y = feats.index.isin(bought_after).astype(int)
    assert 0.2 < y.mean() < 0.9
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0)
    model = LogisticRegression().fit(x_tr, y_tr)
    auc = roc_auc_score(y_te, model.predict_proba(x_te)[:, 1])
    assert auc > 0.7, auc
    # the truth's own propensity ranks customers at least as well as the observable features
    p_true = truth["customer_truth"].set_index("customer_id").loc[feats.index, "p_buy_after_cutoff"]
    assert roc_auc_score(y, p_true) > 0.7


def test_interactions_favour_favourite_categories_and_popular_items(medium):
    frames, truth, combined = medium
    items = frames["partner-0"]["items"].set_index("item_id")["category"]
    fav = truth["customer_truth"].set_index("customer_id")["favourite_categories"].str.split("|")
    inter = combined["interactions"]
    cats = inter["item_id"].map(items)
    in_fav = [c in f for c, f in zip(cats, inter["customer_id"].map(fav), strict=True)]
    assert np.mean(in_fav) > 0.6  # ~0.25 if categories were chosen at random
    popularity = inter["item_id"].value_counts()
    assert popularity.iloc[:10].sum() > 0.1 * len(inter)  # Zipf head; 5% if uniform over 200 items


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"customers": 0}, "customers"),
        ({"partners": 0}, "partners"),
        ({"customers": 3, "partners": 4}, "cannot exceed"),
        ({"seed": -1}, "seed"),
        ({"items": 2}, "items"),
        ({"campaigns": -1}, "campaigns"),
        ({"fmt": "xlsx"}, "fmt"),
        ({"end": "2999-01-01"}, "future"),
        ({"start": "2026-01-01", "end": "2025-01-01"}, "before end"),
        ({"cutoff": "2023-01-01"}, "cutoff"),
        ({"start": "not a date"}, "start"),
        ({"chunk_customers": 0}, "chunk_customers"),
    ],
)
def test_bad_config_raises_config_error_and_writes_nothing(tmp_path, changes, message):
    cfg = SynthConfig(**{**SMALL.__dict__, **changes})
    with pytest.raises(ConfigError, match=message):
        generate_partner_frames(cfg)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        write_synthetic(cfg, out)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_run_leaves_no_output(tmp_path):
    out = tmp_path / "out"

    def boom(done: int, total: int) -> None:
        if done < total:
            raise RuntimeError("interrupted")

    cfg = SynthConfig(customers=BLOCK_CUSTOMERS + 10, partners=2, seed=1, items=20, chunk_customers=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_synthetic(cfg, out, progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="overwrite"):
        write_synthetic(SMALL, out)
    assert (out / "keep.txt").exists()
    write_synthetic(SMALL, out, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "partner-0").is_dir() and (out / "ground_truth.json").is_file()


def test_no_campaigns_writes_no_events_file(tmp_path):
    out = tmp_path / "out"
    stats = write_synthetic(SynthConfig(customers=50, partners=2, seed=0, items=6, campaigns=0), out)
    assert stats["rows"]["events"] == 0
    assert not list(out.glob("partner-*/events.*"))
    for path in _partner_files(out):
        read_table(path)
    assert json.loads((out / "ground_truth.json").read_text())["ab_lift"] == {}
