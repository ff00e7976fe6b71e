"""Configuration files (``coordinator.toml``, ``partner.toml``): the shared reading and checking.

Relative paths in a file are relative to the file's own folder, so a deployment folder can be moved as
a whole. Every key is spelled with dashes, like Flower's own TOML files. A typo'd key is an error, not
silently ignored: a misspelt ``enable-supernode-auth``-style setting must never weaken a deployment.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedinsight.core.errors import ConfigError

Port = Annotated[int, Field(ge=1, le=65535)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=lambda s: s.replace("_", "-"),
                              frozen=True)


def check_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not value or any(c in value for c in " /:@"):
            raise ValueError(f"'{value}' is not a host name or IP address") from None
    return value


def _resolve(data: Any, base: Path, keys: set[str]) -> Any:
    """Resolve relative paths (for the dashed keys in ``keys``) against the config file's folder."""
    if isinstance(data, dict):
        return {k: (str((base / v).resolve()) if k in keys and isinstance(v, str) and not Path(v).is_absolute()
                    else _resolve(v, base, keys)) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve(v, base, keys) for v in data]
    return data


_PATH_KEYS = {"state-dir", "ca-cert", "cert", "key", "public-key", "data-path", "protection-policy", "mapping",
              "private-key"}


def format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{where}: {msg}")
    return f"{path} is not a valid configuration: " + "; ".join(lines)


def read_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return _resolve(data, path.resolve().parent, _PATH_KEYS)


def dump_toml(data: dict[str, Any]) -> str:
    """Write a small TOML document (what `certs init` uses to emit starter config files)."""

    def scalar(v: Any) -> str:
        if isinstance(v, list | tuple):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for section, body in data.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{k} = {scalar(v)}" for k, v in row.items() if v is not None]
            lines.append("")
    return "\n".join(lines)
