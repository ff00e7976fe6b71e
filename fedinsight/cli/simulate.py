"""``fedinsight simulate <task>``: one command per registered task, its flags derived from the task's options.

Every command has the simulation's own flags (:class:`~fedinsight.simulation.options.SimulationOptions`:
``--dataset``, ``--partners``, ``--out`` ...) and the task's (its ``Options`` class); a flag both define
(``--seed``) sets both. Nothing here is written per task: adding a task to the registry adds its command.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import typer
from rich.table import Table

from fedinsight.cli.common import err, out, progress_bar, reproduce_command, show_preview
from fedinsight.federation import progress
from fedinsight.federation.currency import CurrencyOptions
from fedinsight.federation.options import CliOption, Options, read_option_file
from fedinsight.federation.task import Task
from fedinsight.simulation.options import SimulationOptions
from fedinsight.tasks import TASKS

simulate_app = typer.Typer(
    help="Simulate N partners on this machine with Flower's simulation runtime (one command per task).",
    no_args_is_help=True,
)

_OUTPUT_FLAGS = ("as_json", "verbose")


def _parameter(opt: CliOption) -> inspect.Parameter:
    """A typer option for one option field (bools as --flag/--no-flag)."""
    decls = [f"--{opt.flag}/--no-{opt.flag}"] if opt.kind is bool else [f"--{opt.flag}"]
    help_text = opt.help + (f" [{', '.join(opt.choices)}]" if opt.choices else "")
    default: Any = ... if opt.required else opt.default
    annotation: Any = opt.kind | None if opt.optional else opt.kind
    return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *decls, help=help_text, show_default=not opt.optional))


def _fields(task: Task) -> tuple[list[CliOption], list[CliOption]]:
    money = set(CurrencyOptions.python_names())  # shared by every job: listed after the simulation's own flags
    sim = sorted(SimulationOptions.cli_fields(), key=lambda f: f.name in money)
    names = {f.name for f in sim}
    return sim, [f for f in task.options.cli_fields() if f.name not in names]


def _split(task: Task, values: dict[str, Any]) -> tuple[SimulationOptions, dict[str, Any]]:
    sim_fields, task_fields = _fields(task)
    for name in SimulationOptions.file_fields():  # --rates rates.toml: the file's text
        if values.get(name):
            values[name] = read_option_file(name, values[name])
    sim = SimulationOptions(**{f.name: values[f.name] for f in sim_fields})
    task_names = {f.name for f in task.options.cli_fields()}
    options = {name: values[name] for name in task_names if name in values}
    return sim, options


def simulated_partners(task: Task, sim: SimulationOptions) -> int:
    """How many partners a simulation will have (a folder's partner folders, else ``--partners`` or the task's)."""
    from fedinsight.data.federation import BUILTIN_DATASETS
    from fedinsight.simulation.partners import Partners

    if sim.dataset not in BUILTIN_DATASETS:
        return len(Partners.from_folder(sim.dataset).folders)
    return sim.partners or task.default_partners


def headline_table(task: Task, summary: dict[str, Any]) -> Table:
    table = Table(title=f"{task.title}: {summary.get('partners')} partners ({summary.get('dataset')})",
                  show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in task.headline(summary):
        table.add_row(key, value)
    return table


def make_command(task: Task) -> Any:
    """The ``simulate <task>`` command function, with a signature typer reads its flags from."""

    def command(**values: Any) -> None:
        from fedinsight.simulation.run import simulate

        as_json, verbose = values.pop("as_json"), values.pop("verbose")
        sim, options = _split(task, values)
        for name in task.options.file_fields():  # a file named on the command line: the run config gets its text
            if options.get(name):
                options[name] = read_option_file(name, options[name])
        preview = task.preview(task.options(**options), simulated_partners(task, sim))
        if preview is not None:
            show_preview(preview, as_json=as_json)
        with progress_bar() as bars:
            ids: dict[str, Any] = {}

            def on_event(stage: str, done: int, total: int, info: dict[str, Any]) -> None:
                if stage not in ids:
                    ids[stage] = bars.add_task(stage, total=total or None)
                text = stage
                if info.get("training_partners") is not None:
                    text += f" · {info['training_partners']}/{info.get('partners')} partners training"
                if isinstance(info.get("auc"), float):
                    text += f" · auc {info['auc']:.4f}"
                bars.update(ids[stage], completed=done, total=total or None, description=text)

            with progress.listening(on_event):
                run = simulate(task.name, sim, options, command=reproduce_command(), verbose=verbose)
        if as_json:
            out.print_json(json.dumps(run.summary))
            return
        out.print(headline_table(task, run.summary))
        if run.report_path is not None:
            err.print(f"report: {run.report_path}")

    sim_fields, task_fields = _fields(task)
    params = [_parameter(f) for f in (*sim_fields, *task_fields)]
    params += [
        inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--verbose", help="Show Flower's and Ray's logs.")),
        inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--json", help="Print summary.json instead of a table.")),
    ]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = f"simulate_{task.name}"
    command.__doc__ = (f"{task.title}, across simulated partners (task '{task.name}').\n\n"
                       f"Example: fedinsight simulate {task.name.replace('_', '-')} --dataset synthetic --out runs/"
                       f"{task.name}")
    return command


def command_name(task: Task) -> str:
    return task.name.replace("_", "-")


for _task in TASKS:
    simulate_app.command(command_name(_task))(make_command(_task))
    for _alias in _task.aliases:  # old names keep working (scripts written before a rename), unlisted
        if _alias != command_name(_task):
            simulate_app.command(_alias, hidden=True)(make_command(_task))

__all__ = ["Options", "command_name", "simulate_app"]
