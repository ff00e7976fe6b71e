"""The partner as a task's handlers see it: its data view, its budget gate, its vault and its own settings.

:class:`PartnerSide` implements the task contract's :class:`~fedinsight.federation.task.Partner`. The
ClientApp builds one per message (cheap: the view and the gate are cached per process), and the CLI's
partner-side commands (scoring, serving, exports) build one for a folder with :func:`open_partner`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from flwr.app import Context, RecordDict

from fedinsight.core.errors import ConfigError
from fedinsight.data.currency import RateTable
from fedinsight.data.federation import partner_folders
from fedinsight.data.schema import PartnerData
from fedinsight.federation.budget import DEFAULT_DELTA, BudgetGate
from fedinsight.federation.job import JobSettings
from fedinsight.federation.scan import Scan
from fedinsight.partner.engine import EngineSettings
from fedinsight.partner.settings import float_setting, node_settings, require_dp
from fedinsight.partner.vault import PartnerVault
from fedinsight.partner.view import PartnerView, simulated_folder
from fedinsight.privacy.ledger import PrivacyLedger
from fedinsight.privacy.tokenize import Tokenizer

LEDGER_FILE = "partner-ledger.db"


@functools.cache
def _ledger(url: str) -> PrivacyLedger:
    return PrivacyLedger(url)


@functools.cache
def _gate(partner_id: str, url: str, cap: float | None, delta: float, require: bool) -> BudgetGate:
    return BudgetGate(partner_id, _ledger(url), cap=cap, delta=delta, require_dp=require)


def _simulated_folder(root: str, partition_id: int, job_id: str) -> Path:
    """The simulated partner's folder (:func:`~fedinsight.partner.view.simulated_folder`), from a listing made once
    per job and data root in this process. Listing the root scans every partner folder: done for every message, a
    1,000-partner job spent 0.15 s of each message's handler on it (O(partners) per message, O(partners^2) per
    job). A new job, or a partner folder added, removed or renamed under the root (its mtime), lists it again."""
    stamp = Path(root).stat().st_mtime_ns if Path(root).is_dir() else 0
    folders = _folders(root, job_id, stamp)
    if 0 <= partition_id < len(folders):
        return folders[partition_id]
    return simulated_folder(root, partition_id)  # out of range: the view's own error, naming the count


@functools.lru_cache(maxsize=8)
def _folders(root: str, job_id: str, stamp: int) -> tuple[Path, ...]:
    return tuple(partner_folders(Path(root)))


class PartnerSide:
    """One partner, for one task (its consent purpose), as its handlers see it."""

    def __init__(self, purpose: str, context: Context | None, config: Mapping[str, Any], *,
                 folder: str | Path | None = None) -> None:
        self.context = context or Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
        self.settings = node_settings(self.context.node_config)
        self.config = dict(config)
        self.deployed = "data-path" in self.settings
        if folder is not None:
            path = Path(folder)
        elif self.deployed:
            path = Path(str(self.settings["data-path"]))
        elif "partition-id" in self.settings and config.get("data-root"):
            path = _simulated_folder(str(config["data-root"]), int(self.settings["partition-id"]),
                                     str(config.get("job-id") or ""))
        else:
            raise ConfigError("partner has no data: start it with --node-config data-path=FOLDER")
        self.partner_id = str(self.settings.get("partner-id") or path.name)
        rates = RateTable.of(str(config.get("currency") or ""), str(config.get("rates") or ""))  # the job's table
        self.view = PartnerView(path, purpose, policy_file=self.settings.get("protection-policy"),
                                mapping_file=self.settings.get("mapping"), rates=rates, name=self.partner_id,
                                engine=EngineSettings.from_node(self.settings))
        self._data: PartnerData | None = None
        self._customers: int | None = None

    # the Partner protocol
    def data(self) -> PartnerData:
        """The view's tables, read once per message (a PartnerSide serves one message: the next one reads again,
        so a consent change or an erasure takes effect from the next message on)."""
        if self._data is None:
            self._data = self.view.tables()
        return self._data

    @property
    def vault(self) -> PartnerVault:
        return self.view.vault

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    def scan(self, scan: Scan) -> pd.DataFrame:
        return self.view.scan(scan)

    def scans(self, scans: list[Scan]) -> list[pd.DataFrame]:
        return self.view.scans(scans)

    def columns(self) -> dict[str, list[str]]:
        return self.view.columns()

    def timezone(self) -> str:
        return self.view.timezone

    def identities(self, tokens: Any) -> Any:
        return self.view.identities(tokens)

    def token(self, customer_id: str) -> str:
        return Tokenizer(self.view.policy.tokenization_ring()).token(str(customer_id))

    @property
    def state_dir(self) -> Path:
        explicit = self.settings.get("state-dir")
        return Path(str(explicit)) if explicit else self.view.state_dir

    @property
    def gate(self) -> BudgetGate:
        """The partner's own budget: its node config in a deployment; the simulation's stand-ins otherwise."""
        if self.deployed:
            url = str(self.settings.get("ledger-url") or f"sqlite:///{self.state_dir / LEDGER_FILE}")
            cap = float_setting(self.settings, "epsilon")
            delta = float_setting(self.settings, "delta") or DEFAULT_DELTA
        else:
            url = str(self.config.get("partner-ledger-url") or f"sqlite:///{self.state_dir / LEDGER_FILE}")
            caps = JobSettings(partner_caps=str(self.config.get("partner-caps", ""))).caps()
            cap = caps.get(self.partner_id, float_setting(self.settings, "epsilon"))
            delta = float_setting(self.settings, "delta") or DEFAULT_DELTA
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        gate = _gate(self.partner_id, url, cap, delta, require_dp(self.settings, self.deployed))
        gate.customers = self.customer_count  # this view's customers (the gate is shared by a partner's tasks)
        return gate

    def check_data(self) -> None:
        """In hello, before the coordinator charges anyone: a value that does not parse as its canonical type is a
        DataValidationError now, not a failed scan mid-job after the budget is spent (the engine reads lazily; a
        pandas load validates the tables as it reads them)."""
        if self._data is None:
            self.view.check_types()

    def customer_count(self) -> int:
        """How many customers this job's data holds (after consent and erasure): what the delta rule protects.
        Counted by the engine (no table is loaded), once per message: the gate asks in hello and on every spend,
        and the next message counts again (a consent change or an erasure takes effect then)."""
        if self._customers is None:
            self._customers = self._data.num_customers if self._data is not None else self.view.count_customers()
        return self._customers


def open_partner(folder: str | Path, purpose: str, *, policy_file: str | Path | None = None,
                 mapping_file: str | Path | None = None, currency: Mapping[str, Any] | None = None) -> PartnerSide:
    """A partner's own folder, read on its own machine by a CLI command (scoring, serving, exports); its
    ``mapping.toml`` applies, or ``mapping_file`` when given. ``currency``: the ``currency``/``rates`` of the job
    whose model is used (its amounts were in that reporting currency, so the partner's must be too)."""
    node = {"protection-policy": str(policy_file)} if policy_file is not None else {}
    if mapping_file is not None:
        node["mapping"] = str(mapping_file)
    context = Context(run_id=0, node_id=0, node_config=node, state=RecordDict(), run_config={})
    config = {k: currency[k] for k in ("currency", "rates") if currency and currency.get(k)}
    return PartnerSide(purpose, context, config, folder=folder)
