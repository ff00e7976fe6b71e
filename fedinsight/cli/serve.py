"""Partner-side uses of released models: ``score propensity`` and ``recommend`` (run on the partner, send nothing).

Both read the partner's customers through its data view: protected, consent- and erasure-filtered.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fedinsight.cli.common import (
    out,
)

score_app = typer.Typer(help="Score a partner's own customers with a trained model (runs on the partner).",
                        no_args_is_help=True)


@score_app.command("propensity")
def score_propensity(
    model_path: Path = typer.Option(..., "--model", help="A model.pt written by `simulate propensity`."),
    data: Path = typer.Option(..., "--data", help="This partner's data folder (its protection policy applies)."),
    mapping: Path | None = typer.Option(None, "--mapping", help="How its own exports are read (default: "
                                                                "DATA/mapping.toml if present)."),
    out_path: Path = typer.Option(..., "--out", help="Scores file (.parquet or .csv)."),
    as_of: str | None = typer.Option(None, "--as-of", help="Score as of this date (default: the training cutoff)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of a table."),
) -> None:
    """Score this partner's customers: propensity, churn probability, expected spend and LTV tier.

    Runs entirely on the partner's machine: reads its data through its own data view (customers without
    consent and erased customers are never scored), writes local files, sends nothing.

    Example: fedinsight score propensity --model runs/cdnow/model.pt --data partners/partner-0 --out s.parquet
    """
    from fedinsight.core.errors import ConfigError
    from fedinsight.core.files import atomic_output_file
    from fedinsight.federation import registry
    from fedinsight.models.propensity import ModelBundle
    from fedinsight.partner.side import open_partner
    from fedinsight.tasks.propensity.scoring import score_partner

    if out_path.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out_path}: use a .parquet or .csv file name")
    bundle = ModelBundle.load(model_path)
    scores = score_partner(bundle, open_partner(data, registry.get("propensity").purpose, mapping_file=mapping),
                           as_of)
    with atomic_output_file(out_path) as tmp:
        if out_path.suffix.lower() == ".csv":
            scores.to_csv(tmp, index=False)
        else:
            scores.to_parquet(tmp, index=False)
    counts = scores["ltv_tier"].value_counts().reindex(["low", "mid", "high"], fill_value=0)
    result = {"customers": len(scores), "as_of": str(scores["as_of"].iloc[0]),
              "mean_propensity": float(scores["propensity"].mean()),
              "expected_spend_total": float(scores["expected_spend"].sum()),
              "tiers": {k: int(v) for k, v in counts.items()}, "out": str(out_path)}
    if as_json:
        out.print_json(json.dumps(result))
        return
    table = Table(title=f"scored {len(scores):,} customers as of {result['as_of']}")
    for col in ("customers", "mean propensity", "expected spend", "low", "mid", "high"):
        table.add_column(col, justify="right")
    table.add_row(f"{len(scores):,}", f"{result['mean_propensity']:.3f}", f"{result['expected_spend_total']:,.2f}",
                  *(f"{result['tiers'][t]:,}" for t in ("low", "mid", "high")))
    out.print(table)
    out.print(f"wrote {out_path}")


def recommend_cmd(
    model: Path = typer.Option(..., "--model", help="The item model folder (OUT/model of a run)."),
    partner_data: Path = typer.Option(..., "--partner-data", help="This partner's data folder."),
    mapping: Path | None = typer.Option(None, "--mapping", help="How its own exports are read (default: "
                                                                "PARTNER_DATA/mapping.toml if present)."),
    customer: str = typer.Option(..., "--customer", help="The customer id (as in the partner's data)."),
    k: int = typer.Option(10, "--k", help="How many items."),
    explore: float | None = typer.Option(None, help="Exploration share (default: the model's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recommend items to one customer, on the partner's own machine (customer embeddings never leave it).

    Example: fedinsight recommend --model runs/rec/model --partner-data runs/rec/partners/partner-0 --customer 42 --k 10
    """
    from dataclasses import asdict

    from fedinsight.federation import registry
    from fedinsight.partner.side import open_partner
    from fedinsight.tasks.recommend.client import recommend_items

    partner = open_partner(partner_data, registry.get("recommend").purpose, mapping_file=mapping)
    recs = recommend_items(model, partner, customer, k=k, explore=explore)
    if as_json:
        out.print_json(json.dumps({"customer": customer, "items": [asdict(r) for r in recs]}))
        return
    table = Table(title=f"top {k} for customer {customer}")
    for col in ("rank", "item", "title", "genres", "score", "slot"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for r in recs:
        table.add_row(str(r.rank), r.item_id, r.title or "", r.genres, f"{r.score:.3f}",
                      "explore" if r.exploration else "")
    out.print(table)
