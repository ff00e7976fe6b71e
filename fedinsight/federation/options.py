"""Options: the one definition of a task's settings, from which every way of setting them derives.

A task declares its settings once, as a frozen dataclass deriving from :class:`Options`, each field made
with :func:`option` (default, help text, bounds, choices). From that one class come:

- the CLI flags of ``fedinsight simulate <task>`` and ``fedinsight job run <task>`` (``--local-epochs``);
- the Python call (``Federation.simulate("recommend", local_epochs=2)``);
- the Flower run config (``local-epochs = 2``), read back by the coordinator and sent to partners;
- the ``settings`` of ``summary.json`` (``local_epochs``).

The name is the same everywhere, up to each format's separator (``-`` in flags and run configs, ``_`` in
Python and JSON). Validation lives in the class (:meth:`Options.validate`), so a bad value is refused
the same way whichever door it came through, before any data is read or any budget is spent.

Old spellings stored in job rows (``budget-epsilon``, ``db-url`` ...) are read through
:data:`Options.ALIASES`; nothing writes them any more.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, ClassVar, Self

from fedinsight.core.errors import ConfigError

Scalar = str | int | float | bool


def option(default: Any = MISSING, help: str = "", *, choices: Sequence[str] | None = None,  # noqa: A002
           minimum: float | None = None, maximum: float | None = None, above: float | None = None,
           below: float | None = None, cli: bool = True, flag: str | None = None, file: bool = False) -> Any:
    """A field of an :class:`Options` class.

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones; ``choices`` the allowed
    strings. ``cli=False`` keeps a field out of the command line (set by the framework, e.g. paths chosen
    by the coordinator). ``flag`` overrides the CLI flag's name (default: the field name with dashes). ``file``: on
    the command line and in the Python call the value may name a file, whose text is the value (a run config
    always carries the text: a coordinator never reads a path a submitter names).
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None, "minimum": minimum, "maximum": maximum,
            "above": above, "below": below, "cli": cli, "flag": flag, "file": file}
    return field(default=default, metadata=meta)


def dashed(name: str) -> str:
    return name.replace("_", "-")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, optional) of an annotation like ``float``, ``int | None``, ``str``."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return kinds[0], True
        raise TypeError(f"option type {annotation} is not a scalar")
    return annotation, False


def convert(name: str, kind: type, value: Any) -> Any:
    """``value`` (from a run config, a CLI string or Python) as ``kind``, or a ConfigError naming the option."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        what = {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "text")
        raise ConfigError(f"--{dashed(name)} must be {what} (got {value!r})") from None


@dataclass(frozen=True)
class Options:
    """Base of every task's options (and of the job settings every task shares)."""

    ALIASES: ClassVar[Mapping[str, str]] = {}
    """Old run-config spellings -> today's dashed name (read only: job rows stored before the rename)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            kind, optional = _base_type(_hints(type(self))[f.name])
            value = getattr(self, f.name)
            if value is None and optional:
                continue
            value = convert(f.name, kind, value)
            object.__setattr__(self, f.name, value)
            self._check_bounds(f, value)
        self.validate()

    @staticmethod
    def _check_bounds(f: dataclasses.Field, value: Any) -> None:
        meta, flag = f.metadata, f"--{dashed(f.name)}"
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{flag} must be one of {', '.join(meta['choices'])} (got {value!r})")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                raise ConfigError(f"{flag} must be a number (got nan)")
            low, high = meta.get("minimum"), meta.get("maximum")
            above, below = meta.get("above"), meta.get("below")
            if low is not None and value < low:
                raise ConfigError(f"{flag} must be at least {low:g} (got {value:g})")
            if high is not None and value > high:
                raise ConfigError(f"{flag} must be at most {high:g} (got {value:g})")
            if above is not None and not value > above:
                raise ConfigError(f"{flag} must be greater than {above:g} (got {value:g})")
            if below is not None and not value < below:
                raise ConfigError(f"{flag} must be less than {below:g} (got {value:g})")

    def validate(self) -> None:
        """Checks across fields (override); single-field bounds come from :func:`option`."""

    # --- the run config ----------------------------------------------------------------------------

    @classmethod
    def run_config_keys(cls) -> dict[str, str]:
        """dashed run-config key -> field name."""
        return {dashed(f.name): f.name for f in fields(cls)}

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], **overrides: Any) -> Self:
        """The options a run config holds (other keys are ignored: they belong to other option groups)."""
        keys = cls.run_config_keys()
        kwargs: dict[str, Any] = {}
        for key, value in run_config.items():
            key = cls.ALIASES.get(key, key).replace("_", "-")
            if key in keys:
                kwargs[keys[key]] = value
        kwargs.update(overrides)
        missing = [dashed(f.name) for f in fields(cls) if f.name not in kwargs
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ConfigError(f"{cls.__name__}: the run config lacks {', '.join(missing)}")
        return cls(**kwargs)

    @classmethod
    def python_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def of(cls, values: Mapping[str, Any], *, what: str = "") -> Self:
        """From Python keyword values (``Federation.simulate``): a misspelt name is a ConfigError that lists the
        options (and the closest one), not a dataclass TypeError."""
        check_names(values, cls.python_names(), what=what or cls.__name__)
        return cls(**values)

    def to_run_config(self) -> dict[str, Scalar]:
        """Flat Flower run config (dashed keys; unset optional values left out)."""
        return {dashed(f.name): getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def settings(self) -> dict[str, Any]:
        """The options as ``summary.json`` records them (Python names; infinities as strings)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = ("inf" if value > 0 else "-inf") if isinstance(value, float) and math.isinf(value) else value
        return out

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    # --- the command line --------------------------------------------------------------------------

    @classmethod
    def cli_fields(cls) -> list[CliOption]:
        """One :class:`CliOption` per field offered on the command line."""
        out = []
        for f in fields(cls):
            if not f.metadata.get("cli", True):
                continue
            kind, optional = _base_type(_hints(cls)[f.name])
            default = None if f.default is MISSING else f.default
            out.append(CliOption(f.name, f.metadata.get("flag") or dashed(f.name), kind, default,
                                 f.default is MISSING, optional, f.metadata.get("help", ""),
                                 f.metadata.get("choices"), bool(f.metadata.get("file"))))
        return out

    @classmethod
    def file_fields(cls) -> list[str]:
        """Fields whose value may name a file on the command line or in the Python call (see :func:`option`)."""
        return [f.name for f in fields(cls) if f.metadata.get("file")]


@dataclass(frozen=True)
class CliOption:
    """What the CLI needs to offer one option as a flag."""

    name: str
    flag: str
    kind: type
    default: Any
    required: bool
    optional: bool
    help: str
    choices: tuple[str, ...] | None
    file: bool = False


def read_option_file(name: str, value: Any) -> Any:
    """The text of the file a ``file`` option names (a path given on the command line or in Python); other
    values unchanged. An unreadable file is a ConfigError naming the option."""
    from pathlib import Path

    if isinstance(value, Path) or (isinstance(value, str) and value and "\n" not in value
                                   and not value.lstrip().startswith("{") and "=" not in value):
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"--{dashed(name)}: no file {path}")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--{dashed(name)}: cannot read {path} ({exc})") from None
    return value


def check_names(values: Mapping[str, Any], known: Sequence[str], *, what: str) -> None:
    """ConfigError for any name in ``values`` that is not ``known``: names the closest match and every option."""
    unknown = [name for name in values if name not in known]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ConfigError(f"{what} has no option {', '.join(hints)}; its options: {', '.join(sorted(known))}")


def merge_run_config(*groups: Options, **extra: Scalar) -> dict[str, Scalar]:
    """One run config from several option groups (later groups win on a shared key)."""
    out: dict[str, Scalar] = {}
    for group in groups:
        out.update(group.to_run_config())
    out.update({dashed(k): v for k, v in extra.items() if v is not None})
    for key, value in out.items():
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"run config value {key}={value!r} must be a str, int, float or bool")
    return out
