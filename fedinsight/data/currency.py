"""Money in one reporting currency: the federation's declared rate table, and the conversion partners apply on read.

Why: each partner records the ISO 4217 code of its amounts in its ``mapping.toml``; a CNY retailer and a USD shop
add up to nonsense (LTV, revenue) unless every amount is first expressed in one currency. The federation declares
that currency and the rates to it as *public configuration* (``--currency USD --rates CNY=0.138,EUR=1.08`` or a
small TOML file); it travels with the job like epsilon, is recorded in ``summary.json`` and the report, and each
partner's data view converts its money columns (:data:`~fedinsight.data.schema.MONEY_COLUMNS`) before any task
sees them. Nothing about a partner's currency is sent: a partner whose currency the table does not cover refuses.

A rate is *units of the reporting currency per one unit* of the other (``CNY=0.138``: 1 CNY = 0.138 USD). A
partner that declares no currency is taken as already in the reporting currency. Without a table, amounts stay
as they are -- but partners declaring *different* currencies are refused (:func:`partner_currencies`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import MONEY_COLUMNS, PartnerData

NOT_DECLARED = "not declared"
"""How the summary names a partner whose mapping states no currency (its amounts are taken as reporting)."""
HINT = "pass --currency CODE --rates CODE=RATE,... (units of the reporting currency per one unit)"


@cache
def currency_codes() -> frozenset[str]:
    """ISO 4217 codes, shipped with the package (``fedinsight/data/currencies.txt``): nothing is downloaded."""
    text = resources.files("fedinsight.data").joinpath("currencies.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def _code(value: Any, where: str) -> str:
    code = str(value).strip().upper()
    if code not in currency_codes():
        raise ConfigError(f"{where}: '{value}' is not an ISO 4217 currency code (e.g. USD, CNY, EUR)")
    return code


def parse_rates(text: str) -> dict[str, float]:
    """``CNY=0.138,EUR=1.08`` or a TOML document (``CNY = 0.138`` lines, at the top or under ``[rates]``)."""
    text = text.strip()
    if not text:
        return {}
    pairs: dict[str, Any]
    if "\n" in text or "[" in text or " = " in text:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--rates: not a rate table ({exc}); write CODE = RATE lines, e.g. CNY = 0.138") from None
        pairs = doc
        if "rates" in doc:
            if not isinstance(doc["rates"], dict) or len(doc) > 1:
                raise ConfigError("--rates: a [rates] table of CODE = RATE lines, and nothing beside it")
            pairs = doc["rates"]
    else:
        pairs = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--rates: '{item}' must be CODE=RATE (e.g. CNY=0.138)")
            pairs[name.strip()] = value.strip()
    rates: dict[str, float] = {}
    for name, value in pairs.items():
        code = _code(name, "--rates")
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0) or isinstance(value, bool):
            raise ConfigError(f"--rates: the rate of {code} must be a positive number (got {value!r})")
        if code in rates:
            raise ConfigError(f"--rates: {code} is given twice")
        rates[code] = rate
    return rates


@dataclass(frozen=True)
class RateTable:
    """The reporting currency and each other currency's rate to it (units of reporting per one unit)."""

    reporting: str
    rates: Mapping[str, float]

    @classmethod
    def of(cls, currency: str, rates: str | Mapping[str, Any] = "") -> RateTable | None:
        """The table of ``--currency``/``--rates`` (``None`` when neither is given); a ConfigError naming the flag."""
        text = rates if isinstance(rates, str) else ",".join(f"{k}={v}" for k, v in rates.items())
        if not currency.strip():
            if text.strip():
                raise ConfigError("--rates needs --currency: the reporting currency the rates convert to (e.g. USD)")
            return None
        reporting = _code(currency, "--currency")
        table = parse_rates(text)
        own = table.pop(reporting, None)
        if own is not None and own != 1.0:
            raise ConfigError(f"--rates: {reporting} is the reporting currency, its rate is 1 (got {own:g})")
        return cls(reporting, dict(sorted(table.items())))

    def text(self) -> str:
        """The canonical run-config form: ``CNY=0.138,EUR=1.08`` (sorted)."""
        return ",".join(f"{code}={rate!r}" for code, rate in self.rates.items())

    def rate(self, currency: str | None, *, partner: str = "") -> float:
        """The factor turning ``currency`` into the reporting currency (1 when it is, or is not declared)."""
        if currency is None or currency == self.reporting:
            return 1.0
        if currency not in self.rates:
            who = f"partner {partner}'s" if partner else "the partner's"
            known = ", ".join([self.reporting, *self.rates])
            raise ConfigError(f"{who} amounts are in {currency}, which the job's rate table does not cover (it has "
                              f"{known}): add it with --rates {currency}=<{self.reporting} per {currency}>")
        return float(self.rates[currency])

    def record(self, partners: Mapping[str, str | None]) -> dict[str, Any]:
        """``summary.json["currency"]``: the public table, and each partner's declared currency."""
        return {"reporting": self.reporting, "rates": dict(self.rates),
                "partners": {name: code or f"{NOT_DECLARED}: taken as {self.reporting}"
                             for name, code in sorted(partners.items())}}


def partner_currencies(declared: Mapping[str, str | None], table: RateTable | None) -> dict[str, str | None]:
    """Check partners' declared currencies against the job's table before anything runs; returns them.

    With a table, a currency it does not cover is refused (naming it and the flag). Without one, partners
    declaring different currencies are refused: adding CNY to USD is the bug this module exists to prevent.
    """
    if table is not None:
        for name, code in sorted(declared.items()):
            table.rate(code, partner=name)
        return dict(declared)
    found = sorted({c for c in declared.values() if c})
    if len(found) > 1:
        by = ", ".join(f"{name}: {code}" for name, code in sorted(declared.items()) if code)
        raise ConfigError(f"the partners' amounts are in different currencies ({by}); adding them up would mix "
                          f"currencies: {HINT}, e.g. --currency {found[-1]} --rates {found[0]}=RATE")
    return dict(declared)


def convert(data: PartnerData, table: RateTable | None) -> PartnerData:
    """``data`` with its money columns in the reporting currency (unchanged without a table).

    The partner's declared currency is ``meta["currency"]``; afterwards ``meta["currency"]`` is the reporting
    currency, ``meta["declared_currency"]`` the partner's own and ``meta["rate"]`` the factor applied.
    """
    if table is None:
        return data
    if "declared_currency" in data.meta:  # converted already
        return data
    declared = str(data.meta["currency"]) if data.meta.get("currency") else None
    rate = table.rate(declared, partner=data.partner_id)
    changes: dict[str, Any] = {}
    for name, columns in MONEY_COLUMNS.items():
        frame = getattr(data, name)
        present = [c for c in columns if frame is not None and c in frame.columns]  # type: ignore[attr-defined]
        if present and rate != 1.0:
            frame = frame.copy()  # type: ignore[attr-defined]
            for column in present:
                frame[column] = frame[column].astype("float64") * rate
            changes[name] = frame
    meta = {**data.meta, "currency": table.reporting, "declared_currency": declared, "rate": rate}
    return replace(data, **changes, meta=meta)
