"""``fedinsight partner ...``: a partner's data protection (policy, keys, consent, erasure) and its process.

``partner export`` (files for the partner's own use, such as target lists) lives in :mod:`.targets`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fedinsight.cli.common import (
    emit,
    err,
    kv_table,
    out,
    progress_bar,
    show,
)
from fedinsight.cli.targets import export_app

partner_app = typer.Typer(
    help="Partner-side data: mapping of its own exports, protection policy, keys, consent checks, erasure, "
         "start/stop.",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Generate, rotate and list partner-held secret keys (files mode 0600).",
                       no_args_is_help=True)
partner_app.add_typer(keys_app, name="keys")
partner_app.add_typer(export_app, name="export")


def _policy_for(data: Path | None, policy: Path | None):  # type: ignore[no-untyped-def]
    from fedinsight.core.errors import ConfigError
    from fedinsight.partner.policy import find_policy, load_policy

    if policy is not None:
        return load_policy(policy)
    if data is not None:
        return find_policy(data)
    raise ConfigError("say which partner: pass --data FOLDER (its protection.toml is used) or --policy FILE")


@partner_app.command("map")
def partner_map(
    suggest: Path | None = typer.Option(None, "--suggest", help="Draft a mapping for the exports in this folder."),
    out_file: Path | None = typer.Option(None, "--out", help="Where the draft goes (default: FOLDER/mapping.toml)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing mapping file."),
    data: Path | None = typer.Option(None, "--data", help="Show how this partner folder is read through its mapping."),
    mapping: Path | None = typer.Option(None, "--mapping", help="The mapping to show (default: DATA/mapping.toml)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Say how this partner's own exports are read: draft a mapping.toml (--suggest), or show one (--data).

    The draft matches headers and value patterns (Chinese and English names, dates, amounts, order lines,
    consent and funnel words, UTC offsets); lines marked CHECK need a look. Nothing but the draft is written.

    Example: fedinsight partner map --suggest /srv/exports   then   fedinsight data validate /srv/exports
    """
    from fedinsight.core.errors import ConfigError

    if (suggest is None) == (data is None):
        raise ConfigError("give --suggest FOLDER (write a draft mapping) or --data FOLDER (show how it is read)")
    if suggest is not None:
        _map_suggest(suggest, out_file, force, as_json)
    else:
        assert data is not None
        _map_show(data, mapping, as_json)


def _map_suggest(folder: Path, out_file: Path | None, force: bool, as_json: bool) -> None:
    from fedinsight.core.errors import ConfigError, DataValidationError
    from fedinsight.core.files import atomic_output_file
    from fedinsight.data.federation import read_partner
    from fedinsight.data.mapping import MAPPING_FILE, load_mapping
    from fedinsight.data.suggest import suggest_mapping

    if not folder.is_dir():
        raise ConfigError(f"--suggest {folder} is not a folder of export files")
    target = out_file or folder / MAPPING_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; edit it, or pass --force to replace it with a new draft")
    draft = suggest_mapping(folder, target)
    if not draft.tables:
        raise DataValidationError(f"no table recognised among the files in {folder} "
                                  f"({len(draft.unassigned)} readable, {len(draft.unreadable)} unreadable); write "
                                  "mapping.toml by hand (docs/data.md, \"Your own exports: the mapping\")",
                                  file=str(folder))
    with atomic_output_file(target) as tmp:
        tmp.write_text(draft.text, encoding="utf-8")
    problems: list[str] = []
    rows: dict[str, int] = {}
    try:
        read = read_partner(folder, mapping=load_mapping(target))
        problems = [str(p) for p in read.problems]
        rows = {name: len(frame) for name, frame in read.data.tables().items()}  # type: ignore[arg-type]
    except DataValidationError as exc:  # the draft itself needs an edit (a CHECK line)
        problems = [str(p) for p in exc.problems]
    result = {"mapping": str(target), "timezone": draft.timezone, "currency": draft.currency,
              "tables": {t: {"files": [str(p.path.name) for p in d.group], "columns": d.columns,
                             "group_by": d.group_by} for t, d in draft.tables.items()},
              "rows": rows, "check": draft.checks, "problems": problems,
              "not_mapped": draft.unassigned, "unreadable": draft.unreadable}
    if as_json:
        emit(result, None, True)
        return
    table = Table(title=f"draft mapping written to {target}")
    for col in ("table", "files", "columns (canonical <- yours)", "rows read"):
        table.add_column(col, overflow="fold")
    for name, d in draft.tables.items():
        read = f"{rows[name]:,}" if name in rows else "-"
        table.add_row(name, ", ".join(p.path.name for p in d.group),
                      ", ".join(f"{c} <- {s}" for c, s in d.columns.items()), read)
    out.print(table)
    out.print(f"time zone: {draft.timezone or 'not known (naive times read as UTC): set timezone'}; "
              f"currency: {draft.currency or 'not known: set currency'}", highlight=False)
    for check in draft.checks:
        out.print(f"CHECK: {check}", highlight=False)
    if problems:
        out.print(f"the draft does not read yet ({len(problems)} problem(s)); edit {target}, then run "
                  f"'fedinsight data validate {folder}':", highlight=False)
        for problem in problems[:10]:
            out.print(f"  {problem}", highlight=False, soft_wrap=True)
    else:
        out.print(f"the draft reads every table; review it, then run 'fedinsight partner init --data {folder}'",
                  highlight=False)


def _map_show(data: Path, mapping: Path | None, as_json: bool) -> None:
    from fedinsight.core.errors import ConfigError
    from fedinsight.data.federation import load_partner_folder
    from fedinsight.data.mapping import find_mapping

    found = find_mapping(data, mapping)
    if found is None:
        raise ConfigError(f"{data} has no mapping.toml: its files must have canonical names, or write one with "
                          f"'fedinsight partner map --suggest {data}'")
    (partner,) = load_partner_folder(data, mapping=found.path).values()
    columns = partner.meta.get("columns") or {}
    result = {"mapping": str(found.path), "timezone": found.timezone, "currency": found.currency,
              "tables": {name: {"files": [str(f) for f in t.files], "rows": len(getattr(partner, name)),
                                "columns": columns.get(name, {})}  # type: ignore[union-attr]
                         for name, t in found.tables.items()}}
    table = Table(title=f"{data} read through {found.path} (time zone {found.timezone}, currency "
                        f"{found.currency or 'not set'})")
    for col in ("table", "files", "rows", "columns (canonical <- yours)"):
        table.add_column(col, overflow="fold")
    for name, info in result["tables"].items():
        table.add_row(name, ", ".join(Path(f).name for f in info["files"]), f"{info['rows']:,}",
                      ", ".join(f"{c} <- {s}" for c, s in info["columns"].items()))
    emit(result, table, as_json)


@partner_app.command("init")
def partner_init(
    data: Path = typer.Option(..., "--data", help="This partner's data folder."),
    mapping: Path | None = typer.Option(None, "--mapping", help="How its own exports are read (default: "
                                                                "DATA/mapping.toml if present)."),
    collaboration_key: Path | None = typer.Option(None, help="A collaboration key ring shared by all partners."),
    overwrite: bool = typer.Option(False, help="Replace an existing protection.toml (keys are kept)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write DATA/protection.toml with every detected identifier column set to "drop", and create the keys.

    Review the file: change "drop" to "tokenize" for keys you need to join on, or "keep" where a
    column only looks like personal data.

    Example: fedinsight partner init --data /srv/partner
    """
    from fedinsight.partner.policy_init import init_partner

    path, findings = init_partner(data, collaboration_key=collaboration_key, overwrite=overwrite, mapping=mapping)
    table = Table(title=f"wrote {path}")
    table.add_column("column")
    table.add_column("looks like")
    table.add_column("declared")
    for f in findings:
        table.add_row(f.where, f.kind, "tokenize (always)" if f.column == "customer_id" else "drop")
    emit({"policy": str(path), "declared_drop": [f.where for f in findings if f.column != "customer_id"]},
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
    emit({"file": str(out_file), "kind": ring.kind, "active": ring.active.key_id}, None, as_json)
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
    emit({"file": str(file), "active": ring.active.key_id, "retired": [k.key_id for k in ring.retired]}, None,
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
    emit({"kind": ring.kind, "keys": [{"id": k.key_id, "status": k.status, "created": k.created}
                                       for k in ring.keys]}, table, as_json)


@partner_app.command("check")
def partner_check(
    data: Path = typer.Option(..., "--data", help="This partner's data folder."),
    mapping: Path | None = typer.Option(None, "--mapping", help="How its own exports are read (default: "
                                                                "DATA/mapping.toml if present)."),
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
    with progress_bar() as progress:
        task = progress.add_task("scan, tokenize, consent filter", total=2)
        protected = load_protected(data, _policy_for(data, policy), mapping=mapping)
        progress.advance(task)
        report = dict(protected.for_purpose(chosen).meta["protection"])  # type: ignore[arg-type]
        progress.advance(task)
    report["policy_file"] = str(protected.policy.source or "built-in default")
    report["mapping"] = str(protected.data.meta.get("mapping") or "none (canonical file names)")
    report["timezone"] = str(protected.data.meta.get("timezone", "UTC"))
    report["currency"] = str(protected.data.meta.get("currency") or "not set")
    table = Table(title=f"protection of {data}")
    table.add_column("item")
    table.add_column("value")
    for key, value in report.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else f"{value:,}" if isinstance(value, int)
                      else str(value))
    emit(report, table, as_json)


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
    from fedinsight.partner.erasure import forget_customers, read_customer_list

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
    emit(payload, table, as_json)


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
    from fedinsight.partner.vault import PartnerVault

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
    emit({"artifacts": rows, "forgotten_customers": vault.register.count()}, table, as_json)
    bad = [r["name"] for r in rows if r["integrity"] != "ok"]
    if bad:
        raise TamperedDataError(f"{len(bad)} stored artifact(s) failed to open: {', '.join(bad)}")


@partner_app.command("start")
def partner_start(config: Path = typer.Option(..., "--config", "-c", help="This partner's partner.toml."),
                  verbose: bool = typer.Option(False, "--verbose",
                                               help="Quote Flower's DEBUG/INFO lines too if the SuperNode dies."),
                  ) -> None:
    """Validate this partner's data, then run its SuperNode against the coordinator until stopped.

    Example: fedinsight partner start --config partner.toml
    """
    from fedinsight.partner.process import run_partner

    code = run_partner(config, say=lambda m: err.print(m, highlight=False, markup=False), verbose=verbose)
    if code:
        raise typer.Exit(code)


@partner_app.command("stop")
def partner_stop(config: Path = typer.Option(..., "--config", "-c", help="This partner's partner.toml."),
                 as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Stop the partner process named by the PID file in its state folder, and any SuperNode or ClientApp a
    partner process killed without stopping them left (named by their PID files).

    Example: fedinsight partner stop --config partner.toml
    """
    from fedinsight.core.children import ChildRecords
    from fedinsight.core.procs import stop_supervisor
    from fedinsight.partner.config import load_partner_config

    cfg = load_partner_config(config, check_files=False)
    pid, left = stop_supervisor(cfg.pid_file, "partner", ChildRecords(cfg.children_dir))
    result: dict[str, object] = {"process": "partner", "pid": pid, "state": "not running" if pid is None else "stopped"}
    if left:  # a partner process killed with kill -9 left these (its SuperNode's PID files name them)
        result["leftovers"] = ", ".join(left)
    emit(result, kv_table("partner stop", result), as_json)


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
    show(as_json, {"partner": cfg.partner.id, "rows": rows, "node_config": node_config(cfg)},
          kv_table(f"partner {cfg.partner.id}: ready", {**{f"{k} rows": f"{v:,}" for k, v in rows.items()},
                                                         "coordinator": cfg.superlink.address}))
