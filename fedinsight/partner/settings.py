"""A partner's own settings: its node config, one spelling per key, read the same way by every task.

``fedinsight partner start`` passes these to its SuperNode (``--node-config``); a simulated partner has
none of its own and takes the simulation's stand-ins from the job's messages (its caps in
``partner-caps``, its ledger in ``partner-ledger-url``). A deployed partner never takes those from a
message: whatever the coordinator sends, its own cap holds.

=======================  ==========================================================================
key                      meaning
=======================  ==========================================================================
``partner-id``           the partner's name (its ledger entry at the coordinator)
``data-path``            the folder of its data files (a deployed partner)
``state-dir``            its own state: ledger, keys, erasure register (default: ``<data>/.fedinsight``)
``protection-policy``    its ``protection.toml`` (default: ``<data-path>/protection.toml``)
``mapping``              its ``mapping.toml``: how its own exports are read (default: ``<data-path>/mapping.toml``
                         if present, else canonical file names)
``ledger-url``           its own privacy ledger (default: SQLite in ``state-dir``)
``epsilon``/``delta``    its lifetime cap over every release of every job (none: no cap of its own)
``require-dp``           refuse non-private jobs (deployed partners: true unless set to false)
``min-eval-customers``   the fewest held-out customers it reports evaluation on (never lowered by a job)
``test-share``           the share of its customers it holds out for evaluation (propensity; default 0.2; a
                         job cannot change it)
``max-honest-partners``  insights with distributed noise: the most partners it trusts not to collude with the
                         coordinator; a job assuming more is refused (0: no distributed-noise job)
``engine``               ``duckdb`` (default) or ``spark``: what runs its scans (:mod:`fedinsight.partner.engine`)
``spark-master``         Spark's master URL with ``engine = spark`` (default ``local[*]``)
``engine-memory``        the engine's memory limit (e.g. ``4GB``); DuckDB spills beyond it to ``state-dir``
``db-url``/``db-tables`` a database (SQLAlchemy URL) holding its canonical tables, and their names there
=======================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedinsight.core.errors import ConfigError
from fedinsight.federation.options import convert

ALIASES: dict[str, str] = {
    "local-ledger": "ledger-url", "local-epsilon": "epsilon", "local-delta": "delta",
    "epsilon-budget": "epsilon", "max-epsilon": "epsilon", "insights-max-epsilon": "epsilon",
}
"""Spellings of earlier versions (partners started before the rename keep working)."""

KEYS = ("partner-id", "data-path", "state-dir", "protection-policy", "mapping", "ledger-url", "epsilon", "delta",
        "require-dp", "min-eval-customers", "test-share", "max-honest-partners", "partition-id", "num-partitions",
        "engine", "spark-master", "engine-memory", "db-url", "db-tables")


def node_settings(node_config: Mapping[str, Any]) -> dict[str, Any]:
    """The node config with today's spellings (``allow-non-private=true`` becomes ``require-dp=false``).

    Where an old and a new spelling both appear, the stricter epsilon wins.
    """
    out: dict[str, Any] = {}
    for key, value in node_config.items():
        if key == "allow-non-private":
            out.setdefault("require-dp", not _bool(key, value))
            continue
        name = ALIASES.get(key, key)
        if name == "epsilon" and "epsilon" in out:
            out["epsilon"] = min(float(out["epsilon"]), float(value))
        else:
            out[name] = value
    return out


def _bool(key: str, value: Any) -> bool:
    try:
        return bool(convert(key, bool, value))
    except ConfigError:
        raise ConfigError(f"node config {key}={value!r} must be true or false") from None


def require_dp(settings: Mapping[str, Any], deployed: bool) -> bool:
    return _bool("require-dp", settings["require-dp"]) if "require-dp" in settings else deployed


def float_setting(settings: Mapping[str, Any], key: str) -> float | None:
    if key not in settings:
        return None
    try:
        value = float(settings[key])
    except (TypeError, ValueError):
        raise ConfigError(f"node config {key}={settings[key]!r} must be a number") from None
    if not value > 0:
        raise ConfigError(f"node config {key} must be positive (got {value})")
    return value
