"""Issue 15's segments goal on planted ground truth: at epsilon 1, 100,000 customers over 10 partners, the DP
centres cost at most 1.10 x non-private k-means and recover the planted segments (ARI >= 0.9); and a planted
partner folder goes through the real Flower simulation like a user's own data.

The run is the task's own partner noising (OpenDP, OS entropy) and coordinator update
(:func:`fedinsight.tasks.segments.simulate.federated_kmeans`), on vectors the task's own feature code computes
from the generator's purchases at each partner.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from fedinsight.data.synth_segments import SegmentsConfig, generate
from fedinsight.tasks.segments import kmeans
from fedinsight.tasks.segments.baselines import best_kmeans
from fedinsight.tasks.segments.features import customer_vectors
from fedinsight.tasks.segments.options import SegmentsOptions
from fedinsight.tasks.segments.simulate import federated_kmeans


@pytest.fixture(scope="module")
def planted_100k():
    """The planted 5 segments at 100,000 customers over 10 partners (the goal's size, kept: the bounds below need
    segments of ~10,000 customers), generated once: each partner's RFM vectors and their customers' planted labels."""
    config = SegmentsConfig(customers=100_000, partners=10, seed=5)
    frames, labels, _ = generate(config)
    segment = labels.set_index("customer_id")["segment"]
    parts, truth = [], []
    for tables in frames.values():
        v = customer_vectors(tables["transactions"], config.as_of, ("recency", "frequency", "monetary"))
        parts.append(v.to_numpy())
        truth.append(segment.loc[v.index].to_numpy())
    return config, parts, truth


@pytest.mark.slow
def test_dp_segments_at_100k_over_10_partners_meet_the_goal(planted_100k):
    config, parts, truth = planted_100k
    x, planted = np.concatenate(parts), np.concatenate(truth)
    base = kmeans.cost(x, best_kmeans(x, 5))
    centres = federated_kmeans(parts, SegmentsOptions(k=5, epsilon=1.0, as_of=config.as_of))
    # Why these bounds hold with overwhelming probability: the smallest planted segment has ~10,000 customers, so
    # each of its centre's coordinates moves by noise of sd ~0.007 (sum sd 12.7 x sqrt(3) x sqrt(10) / 10,000);
    # a 1.10x cost needs ~76 extra cost units (of ~760), i.e. that centre off by ~0.09 in norm, 7 times its typical
    # error of 0.012. The initialisation sees each
    # segment as >= 10,000 customers in a few grid cells against cell noise of sd ~45, and segments are 8 sd
    # apart. The benchmark measured 1.007x median, 1.018x worst, ARI >= 0.9999 over 10 draws.
    assert kmeans.cost(x, centres) / base <= 1.10
    assert adjusted_rand_score(planted, kmeans.assign(x, centres)) >= 0.9


@pytest.mark.slow
def test_a_planted_partner_folder_through_flower_finds_the_planted_segments(tmp_path):
    """The user's-own-folder path: partner folders on disk, the reference date taken from the generator's public
    window, Flower's simulation engine, ledgers charged; the released centres label customers as planted."""
    import pandas as pd

    from fedinsight.data.synth_segments import write_segments
    from fedinsight.simulation.options import SimulationOptions
    from fedinsight.simulation.run import simulate

    config = SegmentsConfig(customers=20_000, partners=3, seed=6)
    truth = write_segments(tmp_path / "seg", config)
    run = simulate("segments", SimulationOptions(dataset=str(tmp_path / "seg"), out=str(tmp_path / "run"), cpus=2),
                   {"epsilon": 1.0})
    summary = run.summary
    assert summary["as_of"] == truth["as_of"] == "2026-01-01"
    assert summary["privacy"]["epsilon_charged"] == pytest.approx(1.0, rel=1e-5)
    labels = pd.read_csv(tmp_path / "seg" / "ground_truth" / "segments.csv").set_index("customer_id")
    x = pd.concat([customer_vectors(pd.read_csv(f / "transactions.csv"), config.as_of,
                                    ("recency", "frequency", "monetary"))
                   for f in sorted((tmp_path / "seg").glob("partner-*"))])
    # >= ~2,000 customers per segment over 3 partners: each centre coordinate's noise sd is ~0.02 (sum sd 12.7 x
    # sqrt(3) x sqrt(3) / 2,000) against 0.2 from a centre to the half-way plane to its neighbour
    ari = adjusted_rand_score(labels.loc[x.index, "segment"], kmeans.assign(x.to_numpy(), summary["centres"]))
    assert ari >= 0.9
    # the expected extra cost from that noise is ~4 % of the non-private cost (sum over segments of 3 sd^2 x size);
    # 1.5x is 12 times that, far in the tail of a sum of 15 squared Gaussians
    assert summary["baselines"]["cost_ratio"] <= 1.5


def test_k_range_picks_the_planted_five_segments_at_100k_for_no_extra_epsilon(planted_100k):
    """``--k-range 2-8`` on the planted 5 segments (100,000 customers, 10 partners, epsilon 1): the elbow rule on
    the noisy histogram -- free post-processing of the initial release -- picks 5."""
    from fedinsight.tasks.segments import server
    from fedinsight.tasks.segments.client import noisy_histogram

    config, parts, _ = planted_100k  # generator seed 5, one of the seeds measured below
    options = SegmentsOptions(k_range="2-8", epsilon=1.0, as_of=config.as_of)
    chosen, _, found = server.prepare(np.sum([noisy_histogram(x, options) for x in parts], axis=0), options, 10)
    costs = {int(k): v for k, v in found["choice"]["costs"].items()}
    # Why this holds with overwhelming probability: each planted segment holds >= 10,000 customers in a few grid
    # cells against cell noise of sd 14.3 x sqrt(10) ~ 45, so the histogram is the planted mixture up to ~1 %.
    # Measured at epsilon 1 (generator seeds 5, 7, 8; 3-4 draws each): the cost falls by 48-51 % from 4 to 5
    # segments and by 11-13 % from 5 to 6 (draws differ by ~1 %), both far from the rule's 20 %.
    assert chosen.k == found["choice"]["chosen"] == 5
    assert costs[5] <= 0.6 * costs[4] and costs[6] >= 0.8 * costs[5]
