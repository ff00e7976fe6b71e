"""Built-in datasets: fetched from pinned wheels, hash-checked, loaded into the canonical schema."""

from __future__ import annotations

import zipfile

import pandas as pd
import pytest

import fedinsight.data.fetch as fetch_mod
from fedinsight.core.errors import DatasetFetchError, DatasetNotFoundError, DataValidationError
from fedinsight.data.fetch import DATASETS, extract_members, fetch_dataset
from fedinsight.data.loaders import load_cdnow, load_movielens_100k


def test_cdnow_matches_the_published_counts(cdnow):
    assert len(cdnow) == 69_659
    assert cdnow["customer_id"].nunique() == 23_570
    assert cdnow["timestamp"].min() == pd.Timestamp("1997-01-01")
    assert cdnow["timestamp"].max() == pd.Timestamp("1998-06-30")
    assert list(cdnow.columns) == ["customer_id", "timestamp", "quantity", "amount"]
    assert (cdnow["amount"] >= 0).all() and (cdnow["quantity"] >= 0).all()


def test_movielens_matches_the_published_counts(movielens):
    inter, users, items = movielens
    assert len(inter) == 100_000
    assert inter["customer_id"].nunique() == 943 == len(users)
    assert inter["item_id"].nunique() == 1_682 == len(items)
    assert set(users.columns) >= {"customer_id", "age", "gender", "occupation", "zip_code"}
    toy_story = items.set_index("item_id").loc["1"]
    assert toy_story["title"] == "Toy Story" and toy_story["year"] == 1995
    assert toy_story["genres"] == "Animation|Children's|Comedy"
    assert inter["rating"].between(1, 5).all()


def test_grouplens_original_files_load_the_same(tmp_path, movielens):
    """A user's own GroupLens copy (u.data/u.user/u.item) gives the same canonical tables."""
    inter, users, items = movielens
    sample = inter.head(50)
    ts = (sample["timestamp"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    lines = [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in zip(sample.customer_id, sample.item_id, sample.rating, ts,
                                                               strict=True)]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    (tmp_path / "u.user").write_text("196|49|M|writer|55105\n186|39|F|executive|00000\n")
    flags = ["0"] * 19
    flags[3] = flags[4] = flags[5] = "1"
    row = "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags)
    (tmp_path / "u.item").write_bytes((row + "\n").encode("latin-1"))
    g_inter, g_users, g_items = load_movielens_100k(tmp_path)
    pd.testing.assert_frame_equal(g_inter, sample.reset_index(drop=True), check_dtype=False)
    assert g_users["zip_code"].tolist() == ["55105", "00000"]
    assert g_items.iloc[0]["genres"] == "Animation|Children's|Comedy"
    assert g_items.iloc[0]["title"] == "Toy Story" and g_items.iloc[0]["year"] == 1995


def test_user_cdnow_file_and_its_errors(tmp_path):
    good = tmp_path / "cdnow.txt"
    good.write_text(" 00001 19970101  1   11.77\n 00002 19970112  5   77.00\n")
    frame = load_cdnow(good)
    assert frame["customer_id"].tolist() == ["00001", "00002"] and frame["quantity"].tolist() == [1, 5]
    bad = tmp_path / "bad.txt"
    bad.write_text(" 00001 19971301  1   11.77\n")
    with pytest.raises(DataValidationError, match="yyyymmdd"):
        load_cdnow(bad)
    with pytest.raises(DataValidationError, match="does not exist"):
        load_cdnow(tmp_path / "missing.txt")


def test_unfetched_dataset_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDINSIGHT_HOME", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="fedinsight data fetch cdnow"):
        load_cdnow()


def _fake_wheel(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def test_hash_mismatch_is_refused_and_nothing_extracted(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDINSIGHT_HOME", str(tmp_path / "home"))
    wheel = _fake_wheel(tmp_path / "x.whl", {"lifetimes/datasets/CDNOW_master.txt": "00001 19970101 1 1.0\n"})
    with pytest.raises(DatasetFetchError, match="sha256"):
        fetch_dataset("cdnow", wheel=wheel)
    assert not (tmp_path / "home" / "datasets" / "cdnow").exists()


def test_missing_member_leaves_no_partial_folder(tmp_path, monkeypatch):
    spec = DATASETS["movielens-100k"]
    wheel = _fake_wheel(tmp_path / "x.whl", {"recbole/dataset_example/ml-100k/ml-100k.inter": "a\n"})
    monkeypatch.setattr(fetch_mod, "sha256_of", lambda _p: spec.sha256)  # pretend the hash matched
    target = tmp_path / "out"
    with pytest.raises(DatasetFetchError, match="does not contain"):
        extract_members(spec, wheel, target)
    assert not target.exists() and list(tmp_path.iterdir()) == [wheel]


def test_fetch_from_registry_then_skip(tmp_path, monkeypatch):
    """A real `pip download --no-deps` of the pinned wheel into an empty home, then a no-op re-fetch."""
    monkeypatch.setenv("FEDINSIGHT_HOME", str(tmp_path))
    folder, did = fetch_dataset("cdnow")
    assert did and (folder / "CDNOW_master.txt").stat().st_size == 1_950_500
    assert sorted(p.name for p in folder.iterdir()) == ["CDNOW_master.txt"]
    assert fetch_dataset("cdnow") == (folder, False)
    assert load_cdnow()["customer_id"].nunique() == 23_570


def test_unknown_dataset_name():
    with pytest.raises(DatasetNotFoundError, match="unknown dataset"):
        fetch_dataset("imagenet")
