"""``fedinsight insights list|show|plan|run``: read released DP insights; plan and run an analyst's own spec."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fedinsight.cli.common import err, kv_table, out, progress_bar, reproduce_command, show_preview
from fedinsight.federation.currency import CurrencyOptions

insights_app = typer.Typer(help="Plan and run your own insight spec; read released DP insights from the store.",
                           no_args_is_help=True)


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
    if kind == "channel_creative":
        by = insight["query"]["by"]
        return "; ".join(f"{g[by]}: " + (f"{g['best_pair']['channel']} · {g['best_pair']['creative']}"
                                          if g.get("best_pair") else "-") for g in result["groups"])
    rows = [g for g in result["groups"] if not g.get("suppressed")]
    return "; ".join(f"{'/'.join(g['keys'].values())}: {_est(g.get('mean') or g.get('count') or g['customers'])}"
                     for g in rows[:3])


@insights_app.command("list")
def insights_list(
    db: str | None = typer.Option(None, help="Run folder, .db file or database URL (default: $FEDINSIGHT_DB_URL)."),
    batch: str | None = typer.Option(None, help="Only this batch id."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List released insights: id, batch, name, epsilon, noise model, suppressed groups, requester, time.

    Example: fedinsight insights list --db runs/ins
    """
    from fedinsight.federation.store import InsightStore

    rows = [s.summary() for s in InsightStore(_insights_db(db)).list(batch_id=batch, limit=limit)]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"{len(rows)} insight(s)")
    for col in ("id", "batch_id", "name", "kind", "epsilon", "noise_model", "suppressed_groups", "requester",
                "created_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["batch_id"], r["name"], r["kind"], f"{r['epsilon']:.3f}", r["noise_model"],
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
def insightsshow(
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


# --- your own questions: plan and run a spec ------------------------------------------------------------

_SPEC = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="The insight spec (TOML), see "
                       "docs/insights.md 'Your own questions'.")
_DATASET = typer.Option(None, "--dataset", help="A folder of partner folders (any names), or a built-in dataset "
                        "(synthetic, cdnow): simulate the partners on this machine.")
_CONFIG = typer.Option(None, "--config", help="coordinator.toml: run the spec as a job on the deployed federation.")
_NOISE = typer.Option("local", "--noise-model", help="local, or distributed-secagg (SecAgg+ noise shares: about "
                      "sqrt(partners) less noise; see docs/insights.md for the trust it needs).")


def _partners(dataset: str | None, partners: int | None, config: Path | None) -> int:
    from fedinsight.data.federation import BUILTIN_DATASETS
    from fedinsight.simulation.partners import Partners
    from fedinsight.tasks.insights import InsightsTask

    if config is not None:
        from fedinsight.coordinator.config import load_coordinator_config

        return len(load_coordinator_config(config, check_files=False).partners)
    if dataset is None:
        from fedinsight.core.errors import ConfigError

        raise ConfigError("say where the partners are: --dataset FOLDER|NAME (simulation) or --config coordinator.toml")
    if dataset not in BUILTIN_DATASETS:
        return len(Partners.from_folder(dataset).folders)
    return partners or InsightsTask.default_partners


_MONEY = {f.name: f for f in CurrencyOptions.cli_fields()}
_CURRENCY = typer.Option("", "--currency", help=_MONEY["currency"].help)
_RATES = typer.Option("", "--rates", help=_MONEY["rates"].help)


def _money(currency: str, rates: str) -> dict[str, str]:
    """``--currency``/``--rates`` as the job's settings (a rates file read here), checked; empty when not given."""
    from fedinsight.federation.options import read_option_file

    checked = CurrencyOptions(currency=currency, rates=read_option_file("rates", rates) if rates else "")
    return checked.message_config()


def _census(spec_text: str, dataset: str, out_dir: Path, epsilon: float, partners: int | None, customers: int,
            as_of: str, money: dict[str, str] | None = None) -> dict[str, object]:
    """A charged noisy count of the federation's sizes (an ordinary insights job: lifecycle stages and the funnel
    over all customers) in ``out_dir/census``, charged to ``out_dir``'s ledger; the sizes for the planner."""
    from fedinsight.simulation.options import SimulationOptions
    from fedinsight.simulation.run import simulate
    from fedinsight.tasks.insights.planner import census_spec, sizes_from_census
    from fedinsight.tasks.insights.spec import parse_spec

    spec = parse_spec(spec_text)
    folder = out_dir / "census"  # its own results, the run folder's ledger
    sim = SimulationOptions(dataset=dataset, out=str(folder), partners=partners, customers=customers,
                            db=f"sqlite:///{(out_dir / 'ledger.db').resolve()}", **(money or {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    with progress_bar() as bars:
        bars.add_task(f"noisy count of the federation's sizes (epsilon {epsilon:g}, charged)", total=None)
        run = simulate("insights", sim, {"spec": census_spec(spec, epsilon), "as_of": as_of})
    document = json.loads((folder / "insights.json").read_text())
    sizes = sizes_from_census(document["insights"])
    return {"sizes": sizes, "epsilon": run.summary["privacy"].get("epsilon_charged")}


def _plan(spec: Path, dataset: str | None, partners: int | None, config: Path | None, count: bool,
          count_epsilon: float, out_dir: Path | None, customers: int, as_of: str, only: str,
          money: dict[str, str] | None = None, noise_model: str = "local"):
    from fedinsight.core.errors import ConfigError
    from fedinsight.tasks.insights.options import VALIDATION_DATE, InsightsOptions
    from fedinsight.tasks.insights.planner import noise_setting, plan_job, preview_of

    text = spec.read_text(encoding="utf-8")
    options = InsightsOptions(spec=text, only=only, as_of=as_of, noise_model=noise_model)
    n = _partners(dataset, partners, config)
    sizes, source = None, "declared in the spec"
    if count:
        if dataset is None or out_dir is None:
            raise ConfigError("--count measures sizes in a simulation: give --dataset and --out (the run folder whose "
                              "ledger it is charged to)")
        census = _census(text, dataset, out_dir, count_epsilon, partners, customers, as_of, money)
        sizes, source = census["sizes"], f"noisy count (charged epsilon {census['epsilon']:.3g})"
    job = options.spec_job(requester="plan", as_of=VALIDATION_DATE)
    plan = plan_job(job, n, sizes=sizes, source=source, only=options.only_names(),  # type: ignore[arg-type]
                    distributed=noise_setting(options, n))
    return options, plan, preview_of(plan)


@insights_app.command("plan")
def insights_plan(
    spec: Path = _SPEC,
    dataset: str | None = _DATASET,
    config: Path | None = _CONFIG,
    partners: int | None = typer.Option(None, help="Partners of a built-in dataset (default 3)."),
    customers: int = typer.Option(20_000, help="Customers of the synthetic dataset (with --count)."),
    count: bool = typer.Option(False, "--count", help="Measure the federation's sizes with a noisy count first "
                               "(a charged release, recorded in --out's ledger)."),
    count_epsilon: float = typer.Option(0.2, help="Epsilon the noisy count spends per partner."),
    out_dir: Path | None = typer.Option(None, "--out", help="Run folder for --count (its ledger is charged)."),
    as_of: str = typer.Option("", help="Reference date, if the spec has no [window] end."),
    only: str = typer.Option("", help="Plan only these insights (comma-separated names)."),
    currency: str = _CURRENCY,
    rates: str = _RATES,
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    noise_model: str = _NOISE,
) -> None:
    """Before spending anything: per insight and cell, the noise sd, the 95 % interval, the chance of suppression
    and a proposed epsilon split; a warning (with the customers or epsilon needed) when most answers would be
    suppressed.

    Example: fedinsight insights plan insights.toml --dataset partners/
    """
    _, _, preview = _plan(spec, dataset, partners, config, count, count_epsilon, out_dir, customers, as_of, only,
                          _money(currency, rates), noise_model)
    if as_json:
        out.print_json(json.dumps(preview.data, default=str))
        return
    show_preview(preview)


def _confirm(preview, yes: bool) -> None:  # type: ignore[no-untyped-def]
    """Go on, or refuse (ConfigError, exit 2, nothing charged) when the plan says most answers would be hidden."""
    import sys

    from fedinsight.core.errors import ConfigError

    if not preview.warning or yes:
        return
    if sys.stdin.isatty() and typer.confirm("Most answers would be suppressed. Run anyway?", default=False):
        return
    raise ConfigError(f"refused before anything was charged: {preview.warning}. Run anyway with --yes")


@insights_app.command("run")
def insights_run(
    spec: Path = _SPEC,
    dataset: str | None = _DATASET,
    out_dir: Path | None = typer.Option(None, "--out", help="Run folder of a simulation (its ledger is reused)."),
    config: Path | None = _CONFIG,
    federation: str | None = typer.Option(None, "--federation", help="Federation name in coordinator.toml "
                                          "(default: the coordinator's own)."),
    partners: int | None = typer.Option(None, help="Partners of a built-in dataset (default 3)."),
    customers: int = typer.Option(20_000, help="Customers of the synthetic dataset."),
    as_of: str = typer.Option("", help="Reference date, if the spec has no [window] end."),
    only: str = typer.Option("", help="Run only these insights (comma-separated names)."),
    budget: float | None = typer.Option(None, help="Each simulated partner's budget when its ledger has none yet."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run even if the plan says most answers would be "
                             "suppressed."),
    currency: str = _CURRENCY,
    rates: str = _RATES,
    as_json: bool = typer.Option(False, "--json", help="Print summary.json instead of a table."),
    noise_model: str = _NOISE,
) -> None:
    """Run an insight spec: shows the plan, then simulates it on --dataset (into --out) or submits it as a job to
    the coordinator of --config. Without --yes a plan that would hide most answers is refused, nothing charged.

    Example: fedinsight insights run insights.toml --dataset partners/ --out runs/mine
    """
    from fedinsight.core.errors import ConfigError

    money = _money(currency, rates)  # a bad table is refused before the plan is shown
    options, _, preview = _plan(spec, dataset, partners, config, False, 0.0, None, customers, as_of, only,
                                noise_model=noise_model)
    show_preview(preview, as_json=as_json)
    _confirm(preview, yes)
    task_options = {"spec": options.spec, "accept_suppression": True, "only": only, "as_of": as_of,
                    "noise_model": noise_model}
    if config is not None:
        _submit(config, federation, {**task_options, **money}, as_json)
        return
    if out_dir is None:
        raise ConfigError("give the run folder: --out FOLDER")
    from fedinsight.cli.simulate import headline_table
    from fedinsight.simulation.options import SimulationOptions
    from fedinsight.simulation.run import simulate
    from fedinsight.tasks import insights as insights_task

    sim = SimulationOptions(dataset=str(dataset), out=str(out_dir), partners=partners, customers=customers,
                            budget=budget, **money)
    with progress_bar() as bars:
        bars.add_task("running the spec on the simulated partners", total=None)
        run = simulate("insights", sim, task_options, command=reproduce_command())
    if as_json:
        out.print_json(json.dumps(run.summary))
        return
    out.print(headline_table(insights_task.TASK, run.summary))
    if run.report_path is not None:
        err.print(f"report: {run.report_path}")


def _submit(config: Path, federation: str | None, task_options: dict[str, object], as_json: bool) -> None:
    """The spec as a job of the deployed federation (the same options a `job run insights -o spec=...` carries)."""
    from fedinsight.coordinator.config import load_coordinator_config
    from fedinsight.coordinator.jobs import follow_job, job_epsilon, submit_job
    from fedinsight.coordinator.state import CoordinatorState

    cfg = load_coordinator_config(config, check_files=False)
    state = CoordinatorState.from_config(cfg)
    options = {k.replace("_", "-"): v for k, v in task_options.items() if v not in ("", None)}
    job = submit_job(cfg, state, "insights", federation=federation or cfg.coordinator.federation, options=options,
                     requester="operator")
    job = follow_job(cfg, state, job)
    result = {**job.as_dict(), "epsilon_by_partner": job_epsilon(state, job.id)}
    if as_json:
        out.print_json(json.dumps(result, default=str))
    else:
        out.print(kv_table(f"job {job.id}", {k: str(v) for k, v in result.items()}))
    if job.status == "failed":
        raise typer.Exit(1)
