"""Partner-side uses of released models: ``score propensity`` and ``recommend`` (run on the partner, send nothing).

Both read the partner's customers through its data view: protected, consent- and erasure-filtered.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from fedinsight.cli.common import (
    emit,
    kv_table,
    out,
    progress_bar,
)

if TYPE_CHECKING:
    from fedinsight.tasks.recommend.serving import Recommendation

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
    # the model learned from amounts in its job's reporting currency: this partner's are read in it too
    partner = open_partner(data, registry.get("propensity").purpose, mapping_file=mapping, currency=bundle.config)
    scores = score_partner(bundle, partner, as_of)
    with atomic_output_file(out_path) as tmp:
        if out_path.suffix.lower() == ".csv":
            scores.to_csv(tmp, index=False)
        else:
            scores.to_parquet(tmp, index=False)
    counts = scores["ltv_tier"].value_counts().reindex(["low", "mid", "high"], fill_value=0)
    result = {"customers": len(scores), "as_of": str(scores["as_of"].iloc[0]),
              "mean_propensity": float(scores["propensity"].mean()),
              "expected_spend_total": float(scores["expected_spend"].sum()),
              "currency": bundle.config.get("currency") or partner.view.currency,  # what expected spend is in
              "tiers": {k: int(v) for k, v in counts.items()}, "out": str(out_path)}
    if as_json:
        out.print_json(json.dumps(result))
        return
    table = Table(title=f"scored {len(scores):,} customers as of {result['as_of']}")
    spend = f"expected spend ({result['currency']})" if result["currency"] else "expected spend"
    for col in ("customers", "mean propensity", spend, "low", "mid", "high"):
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
    customer: str | None = typer.Option(None, "--customer", help="One customer id (as in the partner's data)."),
    serve_all: bool = typer.Option(False, "--all", help="Every servable customer of the partner (needs --out)."),
    out_path: Path | None = typer.Option(None, "--out", help="With --all: the lists file (.parquet or .csv)."),
    k: int = typer.Option(10, "--k", help="How many items per customer."),
    explore: float | None = typer.Option(None, help="Exploration share (default: the model's)."),
    segment: str | None = typer.Option(None, "--segment", help="Customers column for cold-start segments "
                                       "(default: segment, rfm_segment, customer_segment, tier or region if present)."),
    min_segment: int = typer.Option(20, "--min-segment", help="Smaller segments use the whole partner's popularity."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recommend items on the partner's own machine (customer embeddings never leave it; nothing is sent).

    A customer with an embedding gets personal items; one with fewer than two interactions gets the
    partner's own popular items in their segment (source "popular-in-segment"). Customers who refused
    recommendations and erased customers are never served: an error for --customer, absent from --all.

    Example: fedinsight recommend --model runs/rec/model --partner-data /srv/shop --customer 42 --k 10

    Example: fedinsight recommend --model runs/rec/model --partner-data /srv/shop --all --out recs.parquet
    """
    from fedinsight.core.errors import ConfigError
    from fedinsight.federation import registry
    from fedinsight.partner.side import open_partner
    from fedinsight.tasks.recommend.serving import OUTPUT_SUFFIXES, PartnerServer, write_recommendations

    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")
    if (customer is None) == (not serve_all):
        raise ConfigError("say whom to serve: --customer ID for one customer, or --all --out FILE for every one")
    if serve_all and (out_path is None or out_path.suffix.lower() not in OUTPUT_SUFFIXES):
        raise ConfigError(f"--all writes a file: pass --out FILE ending in .parquet or .csv (got {out_path})")
    if out_path is not None and not serve_all:
        raise ConfigError("--out goes with --all (one customer's list is printed)")
    partner = open_partner(partner_data, registry.get("recommend").purpose, mapping_file=mapping)
    if customer is not None:
        server = PartnerServer(model, partner, explore=explore, segment=segment, min_segment=min_segment)
        _print_one(customer, k, server.recommend(customer, k), server.model.catalogue.attribute, as_json)
        return
    assert out_path is not None
    with progress_bar() as progress:
        loading = progress.add_task("load model, customer state and data view", total=1)
        server = PartnerServer(model, partner, explore=explore, segment=segment, min_segment=min_segment)
        progress.advance(loading)
        task = progress.add_task("score and rank customers", total=max(1, len(server.tokens)))
        frame = server.recommend_all(k, progress=lambda done, total: progress.update(task, completed=done))
        writing = progress.add_task(f"write {out_path.name}", total=1)
        write_recommendations(frame, out_path)
        progress.advance(writing)
    customers = int(frame["customer_id"].nunique())
    by_source = frame.drop_duplicates("customer_id")["source"].value_counts()
    result = {"customers": customers, "rows": len(frame), "k": k, "out": str(out_path),
              "personal": int(by_source.get("personal", 0)),
              "popular_in_segment": int(by_source.get("popular-in-segment", 0)),
              "segment_column": server.popularity.column, "segments": list(server.popularity.labels)}
    table = kv_table(f"recommendations for {customers:,} customers", {
        "personal": f"{result['personal']:,}", "popular-in-segment (cold start)": f"{result['popular_in_segment']:,}",
        "segments": f"{server.popularity.column or 'none'}: {len(server.popularity.labels)}", "written": str(out_path)})
    emit(result, table, as_json)


def _print_one(customer: str, k: int, recs: list[Recommendation], attribute: str | None, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({"customer": customer, "items": [asdict(r) for r in recs]}))
        return
    where = f" (popular in segment {recs[0].segment})" if recs and recs[0].source == "popular-in-segment" else ""
    table = Table(title=f"top {k} for customer {customer}{where}")
    columns = ("rank", "item", "title", *([attribute] if attribute else []), "score", "slot")
    for col in columns:
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for r in recs:
        table.add_row(str(r.rank), r.item_id, r.title or "", *([r.attributes] if attribute else []), f"{r.score:.3f}",
                      "explore" if r.exploration else "")
    out.print(table)
