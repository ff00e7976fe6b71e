"""The task registry: every task the ClientApp, the ServerApp, the CLI, the job API and the report serve.

Modelled on Opacus' accountant registry: tasks register themselves (``fedinsight.tasks`` registers every
task it ships) and everything else looks them up here by name. An unknown name is an error that lists
the known ones -- never a silent default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedinsight.core.errors import ConfigError

if TYPE_CHECKING:
    from fedinsight.federation.task import Task

_TASKS: dict[str, Task] = {}
_ALIASES: dict[str, str] = {}


def register(task: Task) -> Task:
    """Add ``task``; its ``aliases`` (old names, e.g. in job rows stored before a rename) resolve to it."""
    if task.name in _TASKS and _TASKS[task.name] is not task:
        raise ConfigError(f"two tasks are registered as '{task.name}'")
    _TASKS[task.name] = task
    for alias in task.aliases:
        _ALIASES[alias] = task.name
    return task


def get(name: str) -> Task:
    """The task called ``name`` (or an old name of it); ConfigError naming the known tasks otherwise."""
    key = _ALIASES.get(name, name)
    if key not in _TASKS:
        raise ConfigError(f"unknown task '{name}' (known tasks: {', '.join(names()) or 'none'})")
    return _TASKS[key]


def names() -> list[str]:
    return sorted(_TASKS)


def tasks() -> list[Task]:
    return [_TASKS[n] for n in names()]


def purposes() -> dict[str, str]:
    """Task name -> the consent purpose it serves."""
    return {t.name: t.purpose for t in tasks()}
