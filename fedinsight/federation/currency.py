"""The job's reporting currency and rate table: two settings every job has, whatever its task.

Why a shared option group: the rate table is the federation's public word (like epsilon, not a partner's
secret), so it is declared once here and inherited by :class:`~fedinsight.federation.job.JobSettings` (the run
config of a deployed job: ``-o currency=USD -o rates=CNY=0.138``) and by the simulation's options (the flags
``--currency USD --rates rates.toml`` and ``Federation.simulate(currency="USD", rates={...})``). It travels in
every message to partners (:meth:`CurrencyOptions.message_config`), whose data view converts their amounts on
read (:mod:`fedinsight.data.currency`) -- partners send nothing about their currency back: one whose currency
the table does not cover refuses the job in hello, before anything is computed or charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedinsight.data.currency import RateTable
from fedinsight.federation.options import Options, option


@dataclass(frozen=True)
class CurrencyOptions(Options):
    """``currency`` (the reporting currency) and ``rates`` (to it); both empty: amounts stay as they are."""

    currency: str = option("", "Reporting currency (ISO 4217, e.g. USD): every amount is converted to it with "
                           "--rates before any task sees it.")
    rates: str = option("", "Rates to --currency: CODE=RATE,... (units of it per one unit, e.g. CNY=0.138) or a TOML "
                        "file of CODE = RATE lines. Public: recorded in summary.json and the report.", file=True)

    def validate(self) -> None:
        super().validate()
        table = RateTable.of(self.currency, self.rates)  # a bad code or rate is refused here, whatever the door
        if table is not None:  # the canonical form travels (upper-case codes, sorted, no file text)
            object.__setattr__(self, "currency", table.reporting)
            object.__setattr__(self, "rates", table.text())

    def rate_table(self) -> RateTable | None:
        return RateTable.of(self.currency, self.rates)

    def message_config(self) -> dict[str, Any]:
        """What partners need of it in every message (nothing when no table is declared)."""
        return {"currency": self.currency, "rates": self.rates} if self.currency else {}

    def currency_summary(self) -> dict[str, Any] | None:
        """``summary.json["currency"]`` as the coordinator knows it (partners' own currencies are not sent)."""
        table = self.rate_table()
        return None if table is None else {"reporting": table.reporting, "rates": dict(table.rates)}


def rates_text(value: Any) -> Any:
    """A Python ``rates=`` value as the option's text: a mapping ``{"CNY": 0.138}`` becomes ``CNY=0.138``."""
    if isinstance(value, dict):
        return ",".join(f"{code}={rate}" for code, rate in value.items())
    return value
