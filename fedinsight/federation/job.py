"""The settings every job has, whatever its task: who takes part, where results and the ledger go.

These travel in the Flower run config beside the task's own :class:`~fedinsight.federation.options.Options`.
Some are set only by the framework (a coordinator picks the job id and the output folder; a simulation
names the partners' data folder and the ledger); none of them is the task's business.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from fedinsight.core.db import default_db_url
from fedinsight.core.errors import ConfigError
from fedinsight.federation.currency import CurrencyOptions
from fedinsight.federation.options import option

SIMULATION_ONLY = ("data-root", "ledger-url", "budget", "budget-delta", "partner-caps", "partner-ledger-url")
"""Run-config keys a deployed job may not set: a coordinator never names partner paths, picks its own
database, and a partner's caps are the partner's own (its node config), never the coordinator's word."""

RESERVED = ("job-id", "requester", "out-dir", "publish", "task", "partners")
"""Run-config keys the coordinator sets itself for every deployed job."""


@dataclass(frozen=True)
class JobSettings(CurrencyOptions):
    """What every job carries besides its task's options (and the reporting currency: :class:`CurrencyOptions`)."""

    task: str = option("", cli=False)
    partners: int = option(0, "Number of partners taking part.", minimum=0, cli=False)
    job_id: str = option("", cli=False)
    requester: str = option("simulation", "Who asks; recorded in the ledger.", cli=False)
    out_dir: str = option("", cli=False)
    data_root: str = option("", cli=False)
    ledger_url: str = option("", cli=False)
    budget: float | None = option(None, "Each partner's epsilon budget, if the ledger has none yet.", above=0,
                                  cli=False)
    budget_delta: float | None = option(None, cli=False, above=0, below=1)
    partner_caps: str = option("", cli=False)
    partner_ledger_url: str = option("", cli=False)
    dataset: str = option("", cli=False)
    timeout: float = option(600.0, "Seconds to wait for partners and for each message round.", above=0, cli=False)
    publish: bool = option(False, cli=False)

    ALIASES: ClassVar[dict[str, str]] = {
        "db-url": "ledger-url", "db_url": "ledger-url", "ledger_url": "ledger-url",
        "budget-epsilon": "budget", "epsilon-budget": "budget",
        "partner-budgets": "partner-caps",
        "timeout-s": "timeout", "round-timeout": "timeout", "wait-timeout": "timeout", "secagg-timeout": "timeout",
    }

    def validate(self) -> None:
        super().validate()
        for item in filter(None, (s.strip() for s in self.partner_caps.split(","))):
            name, sep, value = item.partition("=")
            try:
                ok = bool(sep and name.strip()) and float(value) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(f"partner cap '{item}' must be PARTNER=EPSILON (e.g. retail=0.5)")

    @classmethod
    def from_run_config(cls, run_config: Any, **overrides: Any) -> JobSettings:  # type: ignore[override]
        job = super().from_run_config(run_config, **overrides)
        return job if job.job_id else job.replace(job_id=f"{job.task or 'job'}-{uuid.uuid4().hex[:12]}")

    @property
    def ledger(self) -> str:
        """The coordinator's ledger: the run config's (simulation) or the coordinator's database."""
        return self.ledger_url or default_db_url()

    @property
    def simulated(self) -> bool:
        return bool(self.data_root)

    def caps(self) -> dict[str, float]:
        """Simulated partners' own lifetime caps (``retail=0.5,bank=2``)."""
        out = {}
        for item in filter(None, (s.strip() for s in self.partner_caps.split(","))):
            name, _, value = item.partition("=")
            out[name.strip()] = float(value)
        return out
