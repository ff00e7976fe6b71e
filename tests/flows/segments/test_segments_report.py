"""The report's segments section: words, noisy sizes with intervals, suppressed segments hidden everywhere."""

from __future__ import annotations

from fedinsight.tasks.segments.report import segments_sections


def _summary() -> dict:
    return {"as_of": "1998-07-01", "features": ["recency", "frequency", "monetary"], "suppressed_segments": 1,
            "segments": [
                {"segment": 1, "words": "very recent, frequent, high spend", "centre": [0.9, 0.5, 0.7],
                 "typical": {"recency": 12.0, "frequency": 6.0, "monetary": 480.0}, "size": 1234.4,
                 "ci95": [1190.0, 1279.0], "suppressed": False},
                {"segment": 2, "words": "lapsed, one-off, low spend", "centre": [0.1, 0.1, 0.2],
                 "typical": {"recency": 500.0, "frequency": 1.0, "monetary": 20.0}, "size": 766.0,
                 "ci95": [721.0, 811.0], "suppressed": False},
                {"segment": 3, "words": "cooling, repeat, mid spend", "centre": [0.3, 0.3, 0.5],
                 "typical": {"recency": 120.0, "frequency": 2.0, "monetary": 90.0}, "size": None, "ci95": None,
                 "suppressed": True}],
            "baselines": {"cost_ratio": 1.08}}


def test_the_section_describes_each_segment_and_hides_suppressed_sizes():
    cards, sections = segments_sections(_summary())
    html = sections[0].html()
    assert "very recent, frequent, high spend" in html and "1,234" in html and "1,190 – 1,279" in html
    assert "62%" in html and "38%" in html  # shares over the shown segments only
    assert "suppressed" in html and "cooling, repeat, mid spend" not in html  # a small segment is not described
    assert any("1.08x" in c for c in cards)
    # the sizes chart: a bar per shown segment with its interval on hover, the suppressed one without a number
    assert "segments-sizes" in html and "1: 1,234 (95 % interval 1,190 to 1,279)" in html
    assert "3: suppressed (below the minimum group size)" in html


def test_no_segments_no_section():
    assert segments_sections({}) == ([], [])


def test_the_section_says_how_k_was_chosen_its_cost_and_the_notes():
    summary = {**_summary(), "notes": ["The feature 'frequency' hardly varies across the federation's customers."],
               "k_choice": {"range": [2, 4], "chosen": 3, "costs": {"2": 200.0, "3": 100.0, "4": 90.0},
                            "rule": "smallest k after which one more segment cuts the cost by less than 20%",
                            "epsilon": 0.0}}
    html = segments_sections(summary)[1][0].html()
    assert "chosen between 2 and 4: 3" in html and "2: 1.00, 3: 0.50, 4: 0.45" in html
    assert "no extra privacy budget (epsilon 0)" in html
    assert "frequency&#x27; hardly varies across the federation" in html
