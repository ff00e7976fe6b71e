"""Target lists: whom a partner should contact, built and written on the partner's own machine only.

A marketing team wants a file, not a model: the top customers by repurchase propensity, with their LTV tier,
perhaps the items to show them, and how to reach them. Everything here runs where the partner's data is and
sends nothing: customers come from the partner's data view, so a list holds only customers who

* consent to the purpose named (``marketing``, ``analytics``, ``training`` or ``recommendation``: the
  consent purposes of
  :mod:`fedinsight.privacy.consent`) **and** to ``training`` (scores come from the propensity model, as in
  ``fedinsight score propensity``), and
* were not forgotten with ``fedinsight partner forget``.

Recommended items (with a recommender model) are filled only for customers who also consent to
recommendations; the others get an empty cell, never a list computed against their wishes.

The ids in the file are the partner's own ids again (:meth:`PartnerView.identities`), and the contact column
(an e-mail or phone, see :func:`fedinsight.partner.contacts.resolve_contacts`) is read from the partner's own
files by its engine on its own machine, for the listed customers only -- the coordinator never sees either.

Columns of the file, sorted by ``propensity`` (highest first): ``rank``, ``customer_id``, ``contact`` (when a
contact column is known), ``propensity``, ``churn_probability``, ``expected_spend``, ``ltv_tier``,
``recommended_items`` ('|'-separated item ids, with a recommender), ``as_of``, ``horizon_days``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.core.files import atomic_output_file
from fedinsight.federation.scan import Scan
from fedinsight.partner.contacts import Contacts, resolve_contacts
from fedinsight.partner.side import PartnerSide, open_partner
from fedinsight.privacy.consent import PURPOSES

SCORING_PURPOSE = "training"  # what `score propensity` reads its customers for
RECOMMEND_PURPOSE = "recommendation"
OUTPUT_SUFFIXES = (".csv", ".parquet")
COLUMNS = ("rank", "customer_id", "contact", "propensity", "churn_probability", "expected_spend", "ltv_tier",
           "recommended_items", "as_of", "horizon_days")

Step = Callable[[str], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Top:
    """How many customers a list keeps: a share of the scored customers (``20%``) or a count (``500``).

    A share is rounded up (``20%`` of 7 scored customers is 2, of 10 is 2, of 11 is 3): the list holds at least
    that share, never an empty list for a non-empty partner.
    """

    percent: Decimal | None = None
    count: int | None = None

    @classmethod
    def parse(cls, text: str | int) -> Top:
        raw = str(text).strip()
        hint = f"--top '{text}': give a share like 20% (more than 0, at most 100) or a count like 500"
        if raw.endswith("%"):
            try:
                percent = Decimal(raw[:-1].strip())
            except InvalidOperation as exc:
                raise ConfigError(hint) from exc
            if not percent.is_finite() or not 0 < percent <= 100:
                raise ConfigError(hint)
            return cls(percent=percent)
        if not re.fullmatch(r"\d+", raw) or int(raw) < 1:
            raise ConfigError(hint)
        return cls(count=int(raw))

    def of(self, scored: int) -> int:
        """How many of ``scored`` customers the list keeps."""
        if self.count is not None:
            return min(self.count, scored)
        assert self.percent is not None
        return min(scored, math.ceil(self.percent * scored / 100))

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.count)


def check_purpose(purpose: str) -> str:
    """``purpose`` if it is a consent purpose, else one ConfigError listing them."""
    if purpose not in PURPOSES:
        raise ConfigError(f"--purpose '{purpose}' is not a consent purpose; use one of {', '.join(PURPOSES)} "
                          "(customers without consent for it are left out of the list; a marketing-consent column of "
                          "your exports mapped to `consent` covers every purpose, `consent_<purpose>` columns one)")
    return purpose


def check_output(out: str | Path, force: bool) -> Path:
    """The output path, refused before any work if its suffix is wrong or it exists without ``force``."""
    path = Path(out)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {path}: use a .csv or .parquet file name")
    if path.exists() and not force:
        raise ConfigError(f"--out {path} already exists; choose another name or pass --force to replace it")
    return path


@dataclass
class TargetList:
    """A built list and what it says about itself (for the command's summary)."""

    frame: pd.DataFrame
    scored: int  # customers with a score (consenting, not erased, bought in the calibration window)
    eligible: int  # customers of the view for the purpose (consenting, not erased)
    contact_source: str | None  # "transactions.邮箱", "customer_id (Email)", or None: ids only
    purpose: str
    top: Top


def build_targets(bundle, folder: str | Path, *, purpose: str, top: Top | str | int,  # type: ignore[no-untyped-def]
                  mapping_file: str | Path | None = None, recommender: str | Path | None = None, k: int = 5,
                  contact: str | None = None, as_of: str | None = None, step: Step | None = None) -> TargetList:
    """The target list of one partner's folder (see the module docstring). ``bundle``: a loaded
    :class:`~fedinsight.models.propensity.ModelBundle`; ``step`` is told as each stage starts (progress)."""
    from fedinsight.tasks.propensity.scoring import score_scanned

    check_purpose(purpose)
    top = top if isinstance(top, Top) else Top.parse(top)
    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")
    say = step or (lambda _: None)
    say("read the partner's data (consent, erasures)")
    # the model learned from amounts in its job's reporting currency: this partner's are read in it too (as
    # `score propensity` reads them)
    scoring = open_partner(folder, SCORING_PURPOSE, mapping_file=mapping_file, currency=bundle.config)
    chosen = scoring if purpose == SCORING_PURPOSE else open_partner(folder, purpose, mapping_file=mapping_file,
                                                                     currency=bundle.config)
    tables = _refused_as_validated((scoring, chosen), lambda: (scoring.check_data(), scoring.columns())[1])
    if "transactions" not in tables:
        raise DataValidationError(Problem(f"partner {scoring.partner_id}",
                                          "no transactions table: nothing to score (map the orders export)"))
    allowed = _refused_as_validated((scoring, chosen), lambda: view_tokens(chosen))
    say("score customers")
    scores = _refused_as_validated((scoring, chosen), lambda: score_scanned(bundle, scoring, as_of))
    scores = scores[scores["customer_id"].isin(allowed)]
    scored = len(scores)
    scores = scores.sort_values(["propensity", "customer_id"], ascending=[False, True], kind="stable")
    scores = scores.head(top.of(len(scores))).reset_index(drop=True)
    tokens = scores["customer_id"].astype(str)
    items = None
    if recommender is not None:
        say("recommend items")
        items = _recommended(recommender, folder, mapping_file, tokens.to_numpy(), k)
    say("resolve the partner's own ids and contacts")
    contacts = resolve_contacts(scoring.view, contact, tokens)
    frame = _frame(scores, scoring, tokens, contacts, items)
    return TargetList(frame, scored=scored, eligible=len(allowed), contact_source=contacts.source,
                      purpose=purpose, top=top)


def _refused_as_validated(partners: tuple[PartnerSide, ...], read: Callable[[], _T]) -> _T:
    """``read()`` (the engine's), or, when the engine refuses the data, the refusal the validating reader gives: every
    problem at once, with the rows and values (the engine's checks say only which column to fix). Why: the command
    refused bad files in those words before it read through the engine. The whole tables are loaded then, and only
    then: on data that cannot be used anyway, never for a list."""
    try:
        return read()
    except DataValidationError:
        for partner in partners:
            partner.data()  # raises the validation's own DataValidationError
        raise


IN_SCOPE = Scan("targets.in_scope", "SELECT DISTINCT customer_id FROM customers", ("customers",))
"""The customers table's customers in scope (the engine's ``customers`` relation: consent and erasure applied)."""
BUYERS = Scan("targets.buyers", "SELECT DISTINCT customer_id FROM transactions", ("transactions",))
"""Without a customers table, the transactions' customers in scope. Not the engine's ``customers`` relation then:
that is every people table's ids (events, interactions too), and a list counts as eligible only the customers
the transactions name (the rule of the pandas view this replaced: a customer seen only in events is not one)."""


def view_tokens(partner: PartnerSide) -> set[str]:
    """Tokens of the customers the view gives for its purpose (consenting, not erased): its customers table's, or
    without one its transactions'. One engine scan of distinct ids; no table is loaded whole."""
    tables = partner.columns()
    scan = IN_SCOPE if "customers" in tables else BUYERS if "transactions" in tables else None
    return set() if scan is None else set(partner.scan(scan)["customer_id"].astype(str))


def _recommended(model: str | Path, folder: str | Path, mapping_file: str | Path | None, tokens: np.ndarray,
                 k: int) -> list[str]:
    """'|'-joined item ids per token; "" for customers the recommender may not serve (no consent, erased)."""
    from fedinsight.tasks.recommend.serving import PartnerServer

    server = PartnerServer(model, open_partner(folder, RECOMMEND_PURPOSE, mapping_file=mapping_file))
    at = np.searchsorted(server.tokens, tokens)
    servable = (at < len(server.tokens)) & (server.tokens[np.minimum(at, len(server.tokens) - 1)] == tokens) \
        if len(server.tokens) else np.zeros(len(tokens), dtype=bool)
    out = [""] * len(tokens)
    which = np.flatnonzero(servable)
    if len(which):
        ranked = server.rank(at[which].astype(np.int64), k)["items"]
        for row, index in zip(ranked, which, strict=True):
            out[index] = "|".join(str(server.item_ids[i]) for i in row if i >= 0)
    return out


def _frame(scores: pd.DataFrame, partner: PartnerSide, tokens: pd.Series, contacts: Contacts,
           items: list[str] | None) -> pd.DataFrame:
    own = partner.identities(tokens)
    if own.isna().any():
        raise ConfigError("some scored customers have no id in the partner's own files: was its tokenization key "
                          "replaced since? Retry")
    frame = pd.DataFrame({"rank": np.arange(1, len(scores) + 1), "customer_id": own.to_numpy()})
    if contacts.source is not None:
        frame["contact"] = contacts.of(tokens).to_numpy()
    for column in ("propensity", "churn_probability", "expected_spend", "ltv_tier"):
        frame[column] = scores[column].to_numpy()
    if items is not None:
        frame["recommended_items"] = items
    frame["as_of"] = scores["as_of"].to_numpy()
    frame["horizon_days"] = scores["horizon_days"].to_numpy()
    return frame


def write_targets(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write the list atomically (a failed run leaves nothing, an old file stays whole), mode 0600."""
    path = Path(out)
    with atomic_output_file(path) as tmp:
        if path.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path
