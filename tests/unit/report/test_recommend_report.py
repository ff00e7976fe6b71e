"""The recommender's report says when its federated numbers are DP-noised, how noisy, and at what epsilon."""

from __future__ import annotations

from fedinsight.tasks.recommend import TASK
from fedinsight.tasks.recommend.report import recommend_sections


def _summary(federated: dict) -> dict:
    return {"privacy": {"private": True, "epsilon_charged": 1.0, "delta": 1e-6},
            "catalogue": {"diversity": "mean pairwise Jaccard distance of the items' genres"},
            "metrics": {"federated": federated, "popularity": {"hr@10": 0.4, "ndcg@10": 0.22, "coverage": 0.1},
                        "per_round": [{"round": 1, "epsilon": 0.9}]}}


def test_noised_metrics_carry_their_interval_and_epsilon_into_the_report_and_headline():
    federated = {"hr@10": 0.1601, "ndcg@10": 0.0589, "coverage": None, "ild": None, "customers": 943, "noised": True,
                 "model": "the shared item table", "ci95_halfwidth": 0.1332, "epsilon": 0.2934, "releases": 1}
    cards, sections = recommend_sections(_summary(federated))
    html = "".join(cards) + "".join(s.html() for s in sections)
    assert "0.160" in html and "± 0.133 (95 %, DP noise)" in html
    assert "noised sums" in html and "ε 0.293" in html and "Coverage is not released under DP" in html
    headline = dict(TASK.headline(_summary(federated)))
    assert headline["federated: HR@10 / NDCG@10"] == "0.1601 / 0.0589 (DP-noised, ± 0.133 at 95 %)"


def test_an_exact_evaluation_has_no_noise_note():
    exact = {"hr@10": 0.5, "ndcg@10": 0.3, "coverage": 0.2, "ild": 0.6, "customers": 150}
    cards, sections = recommend_sections(_summary(exact))
    html = "".join(cards) + "".join(s.html() for s in sections)
    assert "noised sums" not in html and "DP noise" not in html


def test_a_simulation_shows_each_partners_blend_against_going_alone_in_its_own_names():
    summary = _summary({"hr@10": 0.5, "ndcg@10": 0.3, "coverage": 0.2, "ild": 0.6, "customers": 150})
    summary["per_partner"] = {
        "note": "simulation only",
        "上海旗舰店": {"customers": 94, "blend_weight": 0.25, "alone_model": "item-item",
                      "served": {"hr@10": 0.61}, "federated_personal": {"hr@10": 0.52},
                      "partner_alone": {"hr@10": 0.58}, "partner_popularity": {"hr@10": 0.4}},
        "shop-us": {"note": "no customer state from this job (the partner did not finish it)"},
    }
    _, sections = recommend_sections(summary)
    partners = next(s for s in sections if s.id == "partners")
    html = partners.html()
    assert "上海旗舰店" in html and "item-item" in html and "0.25" in html
    assert "0.61" in html and "0.58" in html and "releases none" in html
    _, without = recommend_sections(_summary({"hr@10": 0.5, "ndcg@10": 0.3, "customers": 150}))
    assert all(s.id != "partners" for s in without)
