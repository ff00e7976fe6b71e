"""Where the coordinator's state lives, reachable from every coordinator-side process.

The coordinator process, the API workers, the CLI (``job``, ``tokens``, ``audit``) and the ServerApp
processes Flower spawns for each job all open the same database and key files. The coordinator passes
their location to its children through the environment (:meth:`CoordinatorState.env`), so a ServerApp
never needs paths in its run config — run configs also reach partners, and partners have no business
knowing where the coordinator keeps its database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fedinsight.coordinator.auth import TokenStore, audit_key_path, token_pepper_path
from fedinsight.coordinator.config import CoordinatorConfig, load_coordinator_config
from fedinsight.coordinator.job_store import JobStore
from fedinsight.core.errors import ConfigError
from fedinsight.federation.store import InsightStore
from fedinsight.privacy.audit import AuditLog, load_or_create_key
from fedinsight.privacy.ledger import PrivacyLedger

ENV_DB_URL = "FEDINSIGHT_DB_URL"
ENV_STATE_DIR = "FEDINSIGHT_STATE_DIR"
ENV_CONFIG = "FEDINSIGHT_COORDINATOR_CONFIG"
ENV_ACCOUNTANT = "FEDINSIGHT_ACCOUNTANT"


@dataclass
class CoordinatorState:
    """Database URL + state folder (for key files), with lazily opened stores."""

    db_url: str
    state_dir: Path
    accountant: str = "rdp"

    @classmethod
    def from_config(cls, config: CoordinatorConfig) -> CoordinatorState:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        return cls(config.database_url, config.state_dir, config.coordinator.accountant)

    @classmethod
    def from_env(cls) -> CoordinatorState | None:
        """The state a coordinator handed to this process, or None when not running under one."""
        if ENV_STATE_DIR not in os.environ or ENV_DB_URL not in os.environ:
            return None
        return cls(os.environ[ENV_DB_URL], Path(os.environ[ENV_STATE_DIR]), os.environ.get(ENV_ACCOUNTANT, "rdp"))

    @classmethod
    def resolve(cls, config_path: str | Path | None) -> CoordinatorState:
        """From ``--config`` if given, else from the environment, else a ConfigError saying what to pass."""
        if config_path is not None:
            return cls.from_config(load_coordinator_config(config_path, check_files=False))
        if (env_path := os.environ.get(ENV_CONFIG)) is not None:
            return cls.resolve(env_path)
        state = cls.from_env()
        if state is None:
            raise ConfigError("no coordinator configuration: pass --config coordinator.toml")
        return state

    def env(self) -> dict[str, str]:
        return {ENV_DB_URL: self.db_url, ENV_STATE_DIR: str(self.state_dir.resolve()),
                ENV_ACCOUNTANT: self.accountant}

    @cached_property
    def ledger(self) -> PrivacyLedger:
        return PrivacyLedger(self.db_url, accountant=self.accountant)

    @cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.db_url, load_or_create_key(audit_key_path(self.state_dir)))

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(self.db_url, load_or_create_key(token_pepper_path(self.state_dir)))

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.db_url)

    @cached_property
    def insights(self) -> InsightStore:
        return InsightStore(self.db_url)
