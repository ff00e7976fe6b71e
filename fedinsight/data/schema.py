"""The canonical partner-data schema (documented in docs/data.md).

Every partner, whatever its source system, hands fedinsight up to five tables. Their column names,
types and keys are declared here once; the validator, the loaders and the synthetic generator all
read these declarations, so the schema cannot drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["string", "int", "float", "bool", "timestamp", "category"]

FUNNEL_STAGES: tuple[str, ...] = ("exposure", "click", "participate", "convert")
"""Marketing funnel steps, in order; each is a subset (per customer and campaign) of the previous."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its type, whether it must be present, and the values it may take."""

    name: str
    type: ColumnType
    required: bool = True
    nullable: bool = False
    min_value: float | None = None
    allowed: tuple[str, ...] | None = None
    description: str = ""
    money: bool = False  # an amount in the partner's currency: converted to the job's reporting currency on read


@dataclass(frozen=True)
class TableSpec:
    """One canonical table. ``key`` columns must be non-null and unique together."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    description: str = ""
    time_column: str | None = None

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


CUSTOMERS = TableSpec(
    name="customers",
    key=("customer_id",),
    description="One row per customer of the partner.",
    columns=(
        ColumnSpec("customer_id", "string", description="The partner's own customer id (tokenized on load)."),
        ColumnSpec(
            "consent",
            "bool",
            required=False,
            description="Customer allows analytics/training use. Missing column = no consent information.",
        ),
        ColumnSpec("age", "int", required=False, nullable=True, min_value=0),
        ColumnSpec("gender", "string", required=False, nullable=True),
        ColumnSpec("occupation", "string", required=False, nullable=True),
        ColumnSpec("zip_code", "string", required=False, nullable=True),
        ColumnSpec("region", "string", required=False, nullable=True),
        ColumnSpec("signup_date", "timestamp", required=False, nullable=True),
    ),
)

TRANSACTIONS = TableSpec(
    name="transactions",
    key=("transaction_id",),
    time_column="timestamp",
    description="Purchases. Many rows per customer; `transaction_id` is optional but unique if given.",
    columns=(
        ColumnSpec("transaction_id", "string", required=False),
        ColumnSpec("customer_id", "string"),
        ColumnSpec("timestamp", "timestamp"),
        ColumnSpec("amount", "float", min_value=0.0, money=True,
                   description="Order value in the partner's currency (the job's reporting currency once read)."),
        ColumnSpec("quantity", "int", min_value=0),
        ColumnSpec("category", "string", required=False, nullable=True),
        ColumnSpec("channel", "string", required=False, nullable=True),
    ),
)

INTERACTIONS = TableSpec(
    name="interactions",
    key=("customer_id", "item_id", "timestamp"),
    time_column="timestamp",
    description="Customer-item interactions (views, ratings, purchases) for recommendation.",
    columns=(
        ColumnSpec("customer_id", "string"),
        ColumnSpec("item_id", "string"),
        ColumnSpec("timestamp", "timestamp"),
        ColumnSpec("rating", "float", required=False, nullable=True, min_value=0.0),
    ),
)

ITEMS = TableSpec(
    name="items",
    key=("item_id",),
    description="The item catalogue (products, films, offers). Public, not customer data.",
    columns=(
        ColumnSpec("item_id", "string"),
        ColumnSpec("title", "string", required=False, nullable=True),
        ColumnSpec("year", "int", required=False, nullable=True),
        ColumnSpec("genres", "string", required=False, nullable=True, description="'|'-separated list."),
        ColumnSpec("category", "string", required=False, nullable=True),
        ColumnSpec("price", "float", required=False, nullable=True, min_value=0.0, money=True),
    ),
)

EVENTS = TableSpec(
    name="events",
    key=("event_id",),
    time_column="timestamp",
    description="Marketing funnel events: exposure -> click -> participate -> convert.",
    columns=(
        ColumnSpec("event_id", "string", required=False),
        ColumnSpec("customer_id", "string"),
        ColumnSpec("timestamp", "timestamp"),
        ColumnSpec("campaign", "string"),
        ColumnSpec("channel", "string"),
        ColumnSpec("stage", "category", allowed=FUNNEL_STAGES),
        ColumnSpec("arm", "string", required=False, nullable=True, description="A/B arm, e.g. 'A' or 'B'."),
        ColumnSpec("creative", "string", required=False, nullable=True,
                   description="The creative (ad, message or content variant) the customer saw, in the partner's "
                               "own names; map the column that holds it to `creative`."),
    ),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (CUSTOMERS, TRANSACTIONS, INTERACTIONS, ITEMS, EVENTS)}
"""All canonical tables by name; a partner file is matched to one by its stem (``transactions.csv``)."""

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")


@dataclass
class PartnerData:
    """The canonical tables one partner holds. Absent tables are ``None``.

    This object only ever lives on the partner's side: nothing in fedinsight sends it anywhere.
    """

    partner_id: str
    customers: object | None = None  # pandas.DataFrame; typed loosely so schema.py stays import-light
    transactions: object | None = None
    interactions: object | None = None
    items: object | None = None
    events: object | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def tables(self) -> dict[str, object]:
        """The tables present, by canonical name."""
        return {name: getattr(self, name) for name in TABLES if getattr(self, name) is not None}

    @property
    def num_customers(self) -> int:
        if self.customers is not None:
            return int(len(self.customers))  # type: ignore[arg-type]
        ids: set[str] = set()
        for name in ("transactions", "interactions", "events"):
            df = getattr(self, name)
            if df is not None:
                ids.update(df["customer_id"].unique())  # type: ignore[index]
        return len(ids)


MONEY_COLUMNS: dict[str, tuple[str, ...]] = {
    name: cols for name, spec in TABLES.items() if (cols := tuple(c.name for c in spec.columns if c.money))}
"""Table -> its money columns (converted to the job's reporting currency by :mod:`fedinsight.data.currency`)."""

SCHEMA_COLUMNS: dict[str, tuple[str, ...]] = {name: tuple(spec.column_names) for name, spec in TABLES.items()}
"""Table -> its canonical column names (the PII scan judges these by their values only)."""
