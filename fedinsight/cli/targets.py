"""``fedinsight partner export targets``, ``export segments`` and ``export offers``: the partner's own lists, written
on the partner, sent nowhere.

Wiring only: :mod:`fedinsight.partner.targets` builds the list. Every option is checked (purpose, --top, the
output file) before the model or the data is read, so a mistake costs nothing and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import typer

from fedinsight.cli.common import emit, kv_table, out, progress_bar

export_app = typer.Typer(help="Files for the partner's own use, written on the partner (target lists).",
                         no_args_is_help=True)


@export_app.command("targets")
def export_targets(
    model: Path = typer.Option(..., "--model", help="A propensity model.pt written by `simulate propensity`."),
    partner_data: Path = typer.Option(..., "--partner-data", help="This partner's data folder."),
    mapping: Path | None = typer.Option(None, "--mapping", help="How its own exports are read (default: "
                                                                "PARTNER_DATA/mapping.toml if present)."),
    top: str = typer.Option(..., "--top", help="How many customers: a share of the scored ones (20%, rounded up) "
                                               "or a count (500)."),
    purpose: str = typer.Option(..., "--purpose", help="The consent purpose the list is for: analytics, training "
                                                       "or recommendation."),
    out_path: Path = typer.Option(..., "--out", help="The list (.csv or .parquet)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    recommender: Path | None = typer.Option(None, "--recommender", help="An item model folder (OUT/model of "
                                            "`simulate recommend`): add recommended items."),
    k: int = typer.Option(5, "--k", help="Recommended items per customer (with --recommender)."),
    contact: str | None = typer.Option(None, "--contact", help="The column that reaches a customer (e-mail or "
                                       "phone; its name in your export); default: found by the PII scan."),
    as_of: str | None = typer.Option(None, "--as-of", help="Score as of this date (default: the training cutoff)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write the customers to contact, best first: the partner's own id, a contact, propensity, LTV tier and
    (with --recommender) recommended items.

    Runs on the partner only and sends nothing. Only customers who consent to --purpose (and to training, which
    the scores come from) and were not erased appear; recommended items only for those who also consent to
    recommendations. The contact column is read from the partner's own files (the PII scan's e-mail or phone
    column, or --contact); without one, the file holds ids only.

    Example: fedinsight partner export targets --model m.pt --partner-data shop --top 20% --purpose training --out t.csv
    """
    from fedinsight.models.propensity import ModelBundle
    from fedinsight.partner.targets import Top, build_targets, check_output, check_purpose, write_targets

    check_purpose(purpose)
    chosen = Top.parse(top)
    target = check_output(out_path, force)
    bundle = ModelBundle.load(model)
    if recommender is not None:
        from fedinsight.tasks.recommend.serving import ItemModel

        ItemModel.load(recommender)  # a wrong folder is refused before the data is read
    stages = ("read the partner's data (consent, erasures)", "score customers", *(["recommend items"]
              if recommender is not None else []), "resolve the partner's own ids and contacts")
    with progress_bar() as progress:
        task = progress.add_task(stages[0], total=len(stages) + 1)

        def step(name: str) -> None:
            progress.update(task, completed=stages.index(name), description=name)

        targets = build_targets(bundle, partner_data, purpose=purpose, top=chosen, mapping_file=mapping,
                                recommender=recommender, k=k, contact=contact, as_of=as_of, step=step)
        progress.update(task, completed=len(stages), description=f"write {target.name}")
        write_targets(targets.frame, target)
        progress.update(task, completed=len(stages) + 1)
    frame = targets.frame
    tiers = frame["ltv_tier"].astype(str).value_counts()
    result = {"customers": len(frame), "scored": targets.scored, "consenting": targets.eligible,
              "purpose": purpose, "top": str(chosen), "contact": targets.contact_source,
              "min_propensity": float(frame["propensity"].min()) if len(frame) else None,
              "tiers": {t: int(tiers.get(t, 0)) for t in ("low", "mid", "high")},
              "recommended_items": recommender is not None, "out": str(target)}
    rows = {"customers listed": f"{len(frame):,} (top {chosen} of {targets.scored:,} scored)",
            f"consenting to {purpose}, not erased": f"{targets.eligible:,}",
            "contact": targets.contact_source or "none known: ids only (pass --contact COLUMN)",
            "lowest propensity listed": f"{result['min_propensity']:.3f}" if len(frame) else "-",
            "LTV tiers (low/mid/high)": "/".join(str(result["tiers"][t]) for t in ("low", "mid", "high")),
            "written": str(target)}
    emit(result, kv_table(f"target list for {purpose}", rows), as_json)
    if not as_json and targets.contact_source is None:
        out.print("no contact column is known for this partner: the list holds its own customer ids only",
                  highlight=False)


@export_app.command("segments")
def export_segments(
    model: Path = typer.Option(..., "--model", help="A segments.json written by `simulate segments` "
                                                    "(RUN/segments.json)."),
    partner_data: Path = typer.Option(..., "--partner-data", help="This partner's data folder."),
    mapping: Path | None = typer.Option(None, "--mapping", help="How its own exports are read (default: "
                                                                "PARTNER_DATA/mapping.toml if present)."),
    out_path: Path = typer.Option(..., "--out", help="The labelled customers (.csv or .parquet)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Label this partner's own customers with the federation's segments: its own id, the segment and its words.

    Runs on the partner only and sends nothing. Only customers who consent to analytics and were not erased, with
    a purchase before the model's reference date, appear.

    Example: fedinsight partner export segments --model runs/seg/segments.json --partner-data shop --out seg.csv
    """
    from fedinsight.partner.side import open_partner
    from fedinsight.partner.targets import check_output, write_targets
    from fedinsight.tasks.segments.export import label_customers, load_model

    target = check_output(out_path, force)
    segments = load_model(model)
    partner = open_partner(partner_data, "analytics", mapping_file=mapping, currency=segments.get("currency"))
    frame = label_customers(segments, partner)
    write_targets(frame, target)
    counts = frame["segment"].value_counts()
    result = {"customers": len(frame), "out": str(target),
              "segments": {str(j + 1): int(counts.get(j + 1, 0)) for j in range(len(segments["centres"]))}}
    rows = {f"segment {j + 1}: {words}": f"{int(counts.get(j + 1, 0)):,}"
            for j, words in enumerate(segments.get("words") or [])}
    rows["written"] = str(target)
    emit(result, kv_table(f"{len(frame):,} customers labelled (on this partner only)", rows), as_json)


@export_app.command("offers")
def export_offers(
    model: Path = typer.Option(..., "--model", help="An uplift_model.json written by `simulate uplift` "
                                                    "(RUN/uplift_model.json)."),
    partner_data: Path = typer.Option(..., "--partner-data", help="This partner's data folder."),
    as_of: str = typer.Option(..., "--as-of", help="Features from purchases before this date (e.g. the next "
                                                   "campaign's start)."),
    mapping: Path | None = typer.Option(None, "--mapping", help="How its own exports are read (default: "
                                                                "PARTNER_DATA/mapping.toml if present)."),
    out_path: Path = typer.Option(..., "--out", help="The offer list (.csv or .parquet)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    purpose: str = typer.Option("marketing", "--purpose", help="The consent purpose the list is for (default "
                                "marketing: contacting customers with offers)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Each of this partner's customers with the offer worth sending (largest expected extra value after its cost)
    or none: its own id, the offer, the expected value, the value tier and each offer's predicted uplift.

    Runs on the partner only and sends nothing. Only customers who consent to --purpose (marketing by default) and
    to training (the model's predictions come from it), and were not erased, appear.

    Example: fedinsight partner export offers --model runs/up/uplift_model.json --partner-data shop
    --as-of 2026-01-01 --out offers.csv
    """
    from fedinsight.partner.side import open_partner
    from fedinsight.partner.targets import check_output, check_purpose, view_tokens, write_targets
    from fedinsight.tasks.uplift.export import load_model, offer_list

    check_purpose(purpose)
    target = check_output(out_path, force)
    uplift = load_model(model)
    partner = open_partner(partner_data, "training", mapping_file=mapping)
    allowed = None if purpose == "training" else view_tokens(open_partner(partner_data, purpose, mapping_file=mapping))
    frame = offer_list(uplift, partner, as_of, allowed=allowed)
    write_targets(frame, target)
    counts = frame["offer"].value_counts()
    result = {"customers": len(frame), "out": str(target),
              "offers": {o: int(counts.get(o, 0)) for o in ["none", *uplift["arms"][1:]]}}
    rows = {f"offer {o}": f"{n:,}" for o, n in result["offers"].items()}
    rows["written"] = str(target)
    emit(result, kv_table(f"{len(frame):,} customers with their best offer (on this partner only)", rows), as_json)
