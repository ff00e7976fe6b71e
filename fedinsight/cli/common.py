"""What every command group shares: consoles, tables, JSON output, progress bars, the reproducing command."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console()


err = Console(stderr=True)


def frame_table(frame, title: str) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "if" else "left")
    for _, row in frame.iterrows():
        table.add_row(*[f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                        for v in row.tolist()])
    return table


_NOT_REPRODUCED = {"as_json", "verbose"}


def reproduce_command() -> str | None:
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
    from fedinsight.core.redact import redact_secrets

    return redact_secrets(shlex.join(parts))  # a --db URL's password must not land in run.json


def json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # type: ignore[union-attr]
    return str(value)


def emit(payload: object, table: Table | None, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(payload, default=str))
    elif table is not None:
        out.print(table)


def kv_table(title: str, rows: dict[str, object]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


def show(as_json: bool, payload: object, table: Table) -> None:
    if as_json:
        out.print_json(json.dumps(payload, default=str))
    else:
        out.print(table)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def preview_table(preview) -> Table:  # type: ignore[no-untyped-def]
    """A task's :class:`~fedinsight.federation.task.Preview` as a rich table (its notes as the caption)."""
    from rich.markup import escape

    table = Table(title=escape(preview.title), caption=escape("\n".join(preview.notes)) or None,
                  caption_justify="left")
    for i, col in enumerate(preview.columns):
        table.add_column(escape(col), justify="left" if i < 2 else "right", overflow="fold")
    for row in preview.rows:
        table.add_row(*[escape(c) for c in row])
    return table


def show_preview(preview, *, as_json: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Print a preview (to stderr when the command's stdout is JSON), its warning in bold."""
    console = err if as_json else out
    console.print(preview_table(preview))
    if preview.warning:
        from rich.markup import escape

        console.print(f"[bold yellow]warning:[/] {escape(preview.warning)}", highlight=False)
