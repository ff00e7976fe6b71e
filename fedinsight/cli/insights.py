"""``fedinsight insights list|show``: read released DP insights from the insight store."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from fedinsight.cli.common import (
    out,
)

insights_app = typer.Typer(help="Read released DP insights from the insight store.", no_args_is_help=True)


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
