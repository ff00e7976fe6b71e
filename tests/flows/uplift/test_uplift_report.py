"""The uplift report section: words a marketer reads, hidden cells stay hidden, undefined releases shown as '-'."""

from __future__ import annotations

import numpy as np

from fedinsight.tasks.uplift.options import UpliftOptions
from fedinsight.tasks.uplift.report import uplift_sections
from fedinsight.tasks.uplift.server import policy_summary, qini_summary


def _summary() -> dict:
    options = UpliftOptions(offer_costs="discount=4,gift=3")
    bins = 14
    counts = np.zeros((2, 4, bins))
    counts[:, 0], counts[:, 2] = 100.0, 100.0  # customers per bin, treated and control
    counts[:, 1, :3], counts[:, 3, :3] = 30.0, 10.0  # the top bins convert more when treated
    policy = np.array([900.0, 400.0, 20.0, 300.0, 120.0, 5.0, 0.0, 60.0, 200.0])
    from fedinsight.tasks.uplift import economics

    money = economics.summary(np.array([1000, 100, 20, 1000, 150, 30, 1000, 90, 25.0]), options.offers,
                              options.costs, options.order_value_cap, noise_sd=10.0)
    return {"campaign": "offers", "metrics": {"federated": qini_summary(counts.ravel(), options, 10)},
            "policy": policy_summary(policy, options, 10), "economics": money}


def test_the_section_names_offers_policy_and_hides_small_cells():
    summary = _summary()
    assert summary["metrics"]["federated"]["discount"]["qini"] > 0
    assert summary["metrics"]["federated"]["discount"]["top_vs_random"] > 1.5
    cards, sections = uplift_sections(summary)
    html = sections[0].html()
    assert len(cards) == 2 and "who the offers of" in html and "Offer policy" in html
    assert "suppressed" in html  # 20, 5 and 0 are under the minimum group size of 50
    hidden = [c for c in summary["policy"]["cells"] if c["suppressed"]]
    assert {(c["offer"], c["tier"]) for c in hidden} == {("none", "high"), ("discount", "high"), ("gift", "low")}
    assert "discount 4, gift 3" in html
    assert "Campaign economics" in html and "ROI" in html
    assert summary["economics"]["gift"]["cpa"]["value"] is None  # fewer conversions than the control: no CPA


def test_an_undefined_release_is_shown_as_a_dash():
    summary = _summary()
    summary["metrics"]["federated"]["gift"]["top_vs_random"] = None  # JSON null: the noisy total was <= 0
    cards, _ = uplift_sections(summary)
    assert any("-x" in c for c in cards)
