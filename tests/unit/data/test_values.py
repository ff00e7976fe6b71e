"""Reading values as exports write them: amounts, local timestamps, offsets, encodings."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fedinsight.data.values import decode, parse_number, parse_timestamps


@pytest.mark.parametrize(
    ("text", "decimal", "expected"),
    [
        ("$1,204.00", ".", 1204.0),
        ("$636.50", ".", 636.5),
        ("¥1,204.50", ".", 1204.5),
        ("￥88", ".", 88.0),
        ("12.5 元", ".", 12.5),
        ("CNY 1,000,000.25", ".", 1_000_000.25),
        ("HK$1,000", ".", 1000.0),
        ("-$5.00", ".", -5.0),
        ("(12.50)", ".", -12.5),
        ("1e3", ".", 1000.0),
        ("1 204,50", ",", 1204.5),
        ("1.204,50 €", ",", 1204.5),
        ("12,5", ",", 12.5),
    ],
)
def test_amounts_with_symbols_and_separators(text, decimal, expected):
    assert parse_number(pd.Series([text], dtype="str"), decimal).iloc[0] == pytest.approx(expected)


@pytest.mark.parametrize(("text", "decimal"), [("12,50", "."), ("1,2345", "."), ("abc", "."), ("$1,204.00", ","),
                                               ("12 apples 3", ".")])
def test_ambiguous_or_unreadable_amounts_are_missing_not_guessed(text, decimal):
    assert math.isnan(parse_number(pd.Series([text], dtype="str"), decimal).iloc[0])


def test_naive_timestamps_are_local_time_in_the_declared_zone():
    out = parse_timestamps(pd.Series(["2024/01/16 13:32:00"], dtype="str"), "%Y/%m/%d %H:%M:%S", "Asia/Shanghai")
    assert out.iloc[0] == pd.Timestamp("2024-01-16 05:32:00")
    assert out.dt.tz is None  # naive UTC is the canonical representation


def test_explicit_offsets_win_over_the_zone():
    values = pd.Series(["2024-03-05 14:22:10 -0400", "2024-01-05 14:22:10 -0500", "2024-03-05T14:22:10+08:00",
                        "2024-03-05 14:22:10Z", "2024-03-05 14:22:10"], dtype="str")
    out = parse_timestamps(values, None, "Asia/Shanghai")
    assert list(out) == [pd.Timestamp("2024-03-05 18:22:10"), pd.Timestamp("2024-01-05 19:22:10"),
                         pd.Timestamp("2024-03-05 06:22:10"), pd.Timestamp("2024-03-05 14:22:10"),
                         pd.Timestamp("2024-03-05 06:22:10")]
    with_format = parse_timestamps(values[:2], "%Y-%m-%d %H:%M:%S %z", "UTC")
    assert list(with_format) == list(out[:2])


def test_daylight_saving_edges_are_read_by_the_documented_rule():
    values = pd.Series(["2024-11-03 01:30:00", "2024-03-10 02:30:00", "2024-07-01 12:00:00"], dtype="str")
    out = parse_timestamps(values, None, "America/New_York")
    assert out.iloc[0] == pd.Timestamp("2024-11-03 05:30:00")  # the repeated hour: the first (EDT) reading
    assert out.iloc[1] == pd.Timestamp("2024-03-10 07:00:00")  # the skipped hour: moved forward to 03:00 EDT
    assert out.iloc[2] == pd.Timestamp("2024-07-01 16:00:00")


def test_a_date_is_not_mistaken_for_an_offset():
    out = parse_timestamps(pd.Series(["2024-01-16"], dtype="str"), None, "UTC")
    assert out.iloc[0] == pd.Timestamp("2024-01-16")


def test_unreadable_timestamps_are_missing():
    out = parse_timestamps(pd.Series(["16.01.2024 13:32", "", None], dtype="str"), "%Y/%m/%d %H:%M", "UTC")
    assert out.isna().all()


def test_utf8_with_or_without_bom_and_gb18030_are_detected():
    text = "会员手机号,是否同意营销\n13800000000,是\n"
    assert decode(text.encode("utf-8-sig")).text == text
    assert decode(text.encode("utf-8")).text == text
    gb = decode(text.encode("gb18030"))
    assert gb.text == text and gb.encoding == "gb18030"
    bad = decode(text.encode("utf-16"))
    assert bad.text is None and "byte 0xff on line 1" in (bad.error or "")
