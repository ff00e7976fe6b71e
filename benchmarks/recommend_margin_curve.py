"""The blend margin's trade-off, from finished replays (issue 18): partners below their alone-model on test against
the blend's gain, for margins of 0 to 3 standard errors (JSON).

Run after ``benchmarks/recommend_blend_rule.py`` (one replay's output per file: the JSON lines it prints, the last
object being the whole replay)::

    python benchmarks/recommend_margin_curve.py runs/recm/replay-*.json
    python benchmarks/recommend_margin_curve.py docs/recommender-margin.json   # the 72 partner-runs kept there

Why it needs no refitting: the margin rule takes the four-fold choice (``folds-4``: best alone-model, then the best
blend weight by validation HR@10) and keeps it only when its pooled validation gain over the alone-model exceeds
``margin`` customer-clustered standard errors, else serves w = 0, the alone-model itself (served - alone = 0 on test,
exactly); margin 0 therefore serves a blend only when it wins on validation at all (``folds-4`` itself also
serves one that ties, so its count of blends is a little larger). A replay records, per partner, that choice's
validation gain, its standard error and its test served - alone, so every margin's outcome follows from them. The
test figures only *judge* the margins: a margin picked from this curve would be chosen on test customers, which the
task's defaults never are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MARGINS = (0.0, 0.5, 1.0, 1.645, 2.0, 3.0)


def replay_partners(path: Path) -> list[dict[str, Any]]:
    """The partners of the whole-replay object at the end of a ``recommend_blend_rule.py`` output, or the
    ``replays.partners`` kept in docs/recommender-margin.json (the same per-partner figures of the ``folds-4`` rule)."""
    text = path.read_text()
    if text.startswith("{\n") and '"replays"' in text:
        return json.loads(text)["replays"]["partners"]
    start = text.rfind("\n{\n") + 1 if not text.startswith("{\n") else 0
    return list(json.loads(text[start:])["partners"].values())


def curve(partners: list[dict[str, Any]], margins: tuple[float, ...] = MARGINS) -> list[dict[str, Any]]:
    """Per margin: blends served, partners below their alone-model on test (and by how much), and the mean served -
    alone HR@10 weighted by customers, over every partner of every replay."""
    customers = sum(p["customers"] for p in partners)
    out = []
    for margin in margins:
        gaps, blends, total = [], 0, 0.0
        for p in partners:
            choice = p["folds-4"]
            served = choice["weight"] > 0 and choice["validation_gain"] > margin * choice["validation_gain_se"]
            diff = choice["served_minus_alone"] if served else 0.0
            blends += served
            total += diff * p["customers"]
            if diff < 0:
                gaps.append(diff)
        out.append({"margin_se": margin, "partner_runs": len(partners), "blends_served": blends,
                    "below_alone_on_test": len(gaps), "gaps": sorted(gaps),
                    "mean_served_minus_alone": round(total / customers, 4)})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("replays", nargs="+", type=Path, help="recommend_blend_rule.py outputs")
    args = parser.parse_args(argv)
    partners = [p for path in args.replays for p in replay_partners(path)]
    print(json.dumps({"replays": [str(p) for p in args.replays], "curve": curve(partners)}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
