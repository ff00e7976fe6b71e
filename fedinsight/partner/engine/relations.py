"""A partner's tables inside an engine, protected the way the pandas view protects them.

:func:`prepare` registers each raw source as ``raw_<table>`` and builds, in this order:

1. a **PII check** on a sample of every raw table (the protection policy's scan: undeclared personal data stops
   the scan, as it stops a pandas read);
2. ``typed_<table>``: the canonical columns the source has, typed as the schema says (text from CSV or a
   database is cast; customer ids trimmed), without the columns the policy drops or tokenizes, money in the
   job's reporting currency;
3. ``scope``: the customers this purpose may use. Only per-customer data leaves the engine for it: the
   customers' ids and consent flags are read into pandas, consent is decided by the same code as the pandas
   view (:func:`~fedinsight.privacy.consent.consent_mask`), ids are tokenized with the partner's key and
   checked against the erasure register, and the allowed raw ids go back in as a relation;
4. the canonical names (``customers``, ``transactions`` ...): the typed tables semi-joined on ``scope``. A scan
   reads only these, so an opted-out or erased customer is in no scan's input, whatever the scan says.

Beside them, for the partner's own exports only, two reads of the *raw* tables that no scan can make
(:func:`raw_columns`, :func:`latest_values`): the column a target list reaches customers by is personal data
the steps above drop, so it is read here, for the partner's own file, and never becomes a scan's input.

Customer ids must be unique in the customers table (checked on the ids read for consent: a DataValidationError
naming the source and the id). Not checked here (``fedinsight data validate`` does it on the folder): other keys,
value ranges and ids missing from the customers table (the semi-join simply leaves such rows out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, Problem
from fedinsight.data.schema import TABLES, ColumnSpec, TableSpec
from fedinsight.federation.scan import sql_string, stripped_sql, unpadded_sql
from fedinsight.partner.engine.base import Engine
from fedinsight.partner.engine.sources import FrameTable, Source, files_stamp
from fedinsight.partner.policy import CUSTOMER_KEY, ProtectionPolicy
from fedinsight.partner.protection import ColumnDecision, erased_among, plan_columns
from fedinsight.privacy.consent import PURPOSES, ErasureRegister, consent_flags, consent_mask
from fedinsight.privacy.pii import PiiFinding
from fedinsight.privacy.tokenize import Tokenizer

PII_SAMPLE_ROWS = 2_000

_UNPADDED: set[tuple[object, ...]] = set()
"""Files (:func:`_stamps` of one table) whose every customer id is already trimmed, as the type check found in this
process: their typed views read the id as it is. Trimming costs ~20 % of the insights scan's query at 100 M rows
(1.5-2.5 s of 9 s), and exports are mostly clean; a changed file has another stamp and is trimmed until checked
again. A database table (no stamp) is always trimmed."""
PEOPLE_TABLES: tuple[str, ...] = ("transactions", "interactions", "events")


_INTEGERS = ("bigint", "int", "integer", "smallint", "tinyint", "hugeint", "long", "short", "byte", "ubigint",
             "uinteger", "usmallint", "utinyint")


_FLOATS = ("double", "float", "real", "float4", "float8")


def _text(quoted: str, source: str) -> str:
    """A column as text the way the pandas view writes it: a whole number stored as a float (Parquet written by
    pandas has float ids whenever one is missing) without its ``.0`` -- ``1.0`` is customer ``1``, as in the CSV
    export next to it. Other values as the engine writes them."""
    if source not in _FLOATS:
        return f"CAST({quoted} AS VARCHAR)"
    return (f"CASE WHEN {quoted} = FLOOR({quoted}) AND ABS({quoted}) < 1e15 "
            f"THEN CAST(CAST({quoted} AS BIGINT) AS VARCHAR) ELSE CAST({quoted} AS VARCHAR) END")


def _id_sql(engine: Engine, table: str) -> str:
    """The trimmed customer id of the raw table ``table`` (registered), typed by its column's engine type."""
    return _cast(CUSTOMER_KEY, "string", engine.column_types(f"raw_{table}").get(CUSTOMER_KEY, "varchar"))


def _cast(column: str, kind: str, source: str = "varchar", *, unpadded: bool = False) -> str:
    """``column`` (of engine type ``source``) as its canonical ``kind``. Why type-aware: a Parquet or database
    column that already has the type is passed through (re-parsing every timestamp through a time zone doubled
    the group-by time at 3 M rows); text from CSV is parsed. ``unpadded``: the customer ids are known to need no
    trimming (:data:`_UNPADDED`)."""
    quoted = f'"{column}"'
    if column == CUSTOMER_KEY:  # trimmed, as the tokenizer trims: " 42", "42\t" and "42" are one customer
        return _text(quoted, source) if unpadded else stripped_sql(_text(quoted, source))
    if kind == "int":
        return (f"CAST({quoted} AS BIGINT)" if source in _INTEGERS
                else f"CAST(ROUND(CAST({quoted} AS DOUBLE)) AS BIGINT)")
    if kind == "float":
        return f"CAST({quoted} AS DOUBLE)"
    if kind == "timestamp":
        if source.startswith("timestamp") and "zone" not in source and source != "timestamptz":
            return f"CAST({quoted} AS TIMESTAMP)"  # naive already: UTC in the canonical schema
        return f"CAST(CAST({quoted} AS TIMESTAMPTZ) AS TIMESTAMP)"  # offsets honoured, then naive UTC
    if kind in ("string", "category"):  # as the pandas validation reads text: trimmed, blank is missing
        return f"NULLIF({stripped_sql(_text(quoted, source))}, '')"
    return f"CAST({quoted} AS VARCHAR)"


def _canonical_labels(column: ColumnSpec, expr: str) -> str:
    """A column with a closed set of values (``stage``) lower-cased as the pandas validation does ("Click" is
    ``click``); a value already canonical is passed as it is, so clean data costs no string operation."""
    if not column.allowed:
        return expr
    raw = f'CAST("{column.name}" AS VARCHAR)'
    listed = ", ".join(sql_string(a) for a in column.allowed)
    return f"CASE WHEN {raw} IN ({listed}) THEN {raw} ELSE LOWER({expr}) END"


def _typed_columns(spec: TableSpec, present: dict[str, str], policy: ProtectionPolicy) -> list[ColumnSpec]:
    """The columns of ``spec`` a typed view holds: those present, minus consent flags (read by the scope only),
    columns the policy drops or tokenizes, and row ids (tokenized in the pandas view; no scan needs them)."""
    kept = []
    for column in spec.columns:
        if column.name not in present or column.type == "bool":
            continue
        action = policy.declared(spec.name, column.name)
        if column.name != CUSTOMER_KEY and (action in ("drop", "tokenize") or column.name.endswith("_id")
                                            and column.name != "item_id"):
            continue
        kept.append(column)
    return kept


def type_problems(engine: Engine, sources: Mapping[str, Source], policy: ProtectionPolicy) -> list[Problem]:
    """The required columns a table lacks, and the typed columns holding a value that does not parse as its
    canonical type, one problem each, counted with ``TRY_CAST`` over every row. Why before a job's charge: a
    scan's ``CAST`` fails only where it reads the value, mid-job, after the budget is spent; and a missing key
    column must be named as such before the personal-data check of a folder without a policy speaks. It finds
    what the scans' casts would refuse, not everything the pandas validation refuses (``nan``, fractional whole
    numbers, values below a column's minimum: ``fedinsight data validate``); the offending values stay on the
    partner."""
    names = [n for n in TABLES if n in sources]
    for name in names:
        engine.register(f"raw_{name}", sources[name])
    problems = []
    for name in names:
        present = engine.column_types(f"raw_{name}")
        spec = TABLES[name]
        problems += [Problem(sources[name].describe(), f"required column is missing (table '{name}' needs "
                             f"{', '.join(spec.required_columns)})", column=c)
                     for c in spec.required_columns if c not in present]
        typed = _typed_columns(TABLES[name], present, policy)
        checked = [c for c in typed if c.type in ("int", "float", "timestamp") and c.name != CUSTOMER_KEY]
        # a value every row must have (the key, an item id, a time ...), blank or missing: the pandas validation
        # refuses it, and a scan would silently leave the row out (a blank time) or count it as another value
        needed = [c for c in typed if not c.nullable]
        if not checked and not needed:
            continue
        counts = [f'count(*) FILTER (WHERE "{c.name}" IS NOT NULL AND '
                  f'{_cast(c.name, c.type, present[c.name]).replace("CAST(", "TRY_CAST(")} IS NULL) AS "bad_{i}"'
                  for i, c in enumerate(checked)]
        counts += [f"count(*) FILTER (WHERE NULLIF({stripped_sql(_text(_quoted(c.name), present[c.name]))}, '') "
                   f'IS NULL) AS "blank_{i}"' for i, c in enumerate(needed)]
        if CUSTOMER_KEY in present:
            key = _text(_quoted(CUSTOMER_KEY), present[CUSTOMER_KEY])
            counts.append(f'count(*) FILTER (WHERE NOT ({unpadded_sql(key)})) AS "padded"')
        row = engine.query(f"SELECT {', '.join(counts)} FROM raw_{name}").iloc[0]
        stamp = _stamps(sources, [name])
        if "padded" in row.index and int(row["padded"]) == 0 and stamp is not None:
            if len(_UNPADDED) > 4096:
                _UNPADDED.clear()
            _UNPADDED.add(stamp)
        kinds = {"int": "a whole number", "float": "a number", "timestamp": "a date and time"}
        problems += [Problem(sources[name].describe(), f"some values are not {kinds[c.type]}; run 'fedinsight data "
                             "validate' on the partner's folder to see them", column=c.name)
                     for i, c in enumerate(checked) if int(row[f"bad_{i}"])]
        problems += [Problem(sources[name].describe(), f"{int(row[f'blank_{i}'])} row(s) have no value in a column "
                             "every row needs; fill or remove them (run 'fedinsight data validate' on the partner's "
                             "folder to see them)", column=c.name)
                     for i, c in enumerate(needed) if int(row[f"blank_{i}"])]
    return problems


def typed_sql(spec: TableSpec, present: dict[str, str], policy: ProtectionPolicy, rate: float = 1.0, *,
              unpadded: bool = False) -> str:
    """The typed view of a raw table whose columns have the engine types ``present`` (module docstring, step 2);
    ``unpadded``: its customer ids need no trimming (:data:`_UNPADDED`)."""
    parts = []
    for column in _typed_columns(spec, present, policy):
        expr = _canonical_labels(column, _cast(column.name, column.type, present[column.name], unpadded=unpadded))
        if column.money and rate != 1.0:
            expr = f"{expr} * CAST('{rate!r}' AS DOUBLE)"
        parts.append(f'{expr} AS "{column.name}"')
    if not parts:
        raise ConfigError(f"the partner's {spec.name} table has none of the canonical columns")
    return f"SELECT {', '.join(parts)} FROM raw_{spec.name}"


def empty_sql(spec: TableSpec) -> str:
    """A table with the canonical columns and no rows (for a partner that does not hold it)."""
    kinds = {"int": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMP", "bool": "BOOLEAN"}
    columns = ", ".join(f'CAST(NULL AS {kinds.get(c.type, "VARCHAR")}) AS "{c.name}"' for c in spec.columns)
    return f"SELECT {columns} WHERE FALSE"


_PII_PASSED: dict[tuple[object, ...], list[ColumnDecision]] = {}
"""Column decisions of samples that passed the PII check in this process, by the engine (its sample's rows), the
files' stamps and the policy's fingerprint (:func:`_check_pii`)."""
_PII_PASSED_SIZE = 1024


def _stamps(sources: Mapping[str, Source] | None, names: list[str]) -> tuple[object, ...] | None:
    """The files behind ``names`` stamped (:func:`files_stamp`), or None (not files, or one gone since listed)."""
    if sources is None:
        return None
    try:
        return files_stamp([sources[n] for n in names])
    except OSError:  # a file gone since the folder was listed: checked (and failing) as before, never kept
        return None


def _check_pii(engine: Engine, names: list[str], policy: ProtectionPolicy,
               sources: Mapping[str, Source] | None = None,
               stamps: tuple[object, ...] | None = None) -> list[ColumnDecision]:
    """The policy's decision for every column of the raw tables ``names``, from a sample of each; undeclared personal
    data raises PiiDetectedError naming every such column. Why a memo: the check reads the same first rows every
    time the same files are prepared (every message of every job a simulation's worker answers, ~1 s a partner), so a
    check that passed is not repeated while every file keeps its stamp (any write changes it) and the policy its
    fingerprint; a failed check is never kept, and tables that are not files are always checked.

    ``stamps``: the files' stamps taken *before* they were registered (their header and dialect read). A pass is
    kept only when the files still carry them after the sample: a file replaced between the registration and the
    sample would otherwise be sampled under the old header and its pass kept under the new stamp."""
    key = (engine.name, tuple(names), stamps, policy.fingerprint) if stamps is not None else None
    if key is not None and key in _PII_PASSED:
        return list(_PII_PASSED[key])
    samples = {name: engine.query(f"SELECT * FROM raw_{name} LIMIT {PII_SAMPLE_ROWS}") for name in names}
    decisions = plan_columns(samples, policy)[0]
    if key is not None and _stamps(sources, names) == stamps:
        if len(_PII_PASSED) >= _PII_PASSED_SIZE:
            _PII_PASSED.clear()
        _PII_PASSED[key] = list(decisions)
    return decisions


def schema(engine: Engine, sources: Mapping[str, Source], policy: ProtectionPolicy) -> dict[str, list[str]]:
    """The canonical tables the partner holds and their canonical columns the policy does not drop, in the
    source's order -- what the pandas view's protected frames hold, read from the sources' headers and a PII
    sample (undeclared personal data stops it, as a pandas read). No table is read whole."""
    names = [n for n in TABLES if n in sources]
    stamps = _stamps(sources, names)
    for name in names:
        engine.register(f"raw_{name}", sources[name])
    dropped = {(d.table, d.column) for d in _check_pii(engine, names, policy, sources, stamps) if d.action == "drop"}
    out: dict[str, list[str]] = {}
    for name in names:
        canonical = set(TABLES[name].column_names)
        out[name] = [c for c in engine.columns(f"raw_{name}") if c in canonical and (name, c) not in dropped]
    return out


def _consent_columns(policy: ProtectionPolicy, present: list[str]) -> list[str]:
    wanted = {policy.consent_column, *policy.consent_purposes.values(),
              *(f"{policy.consent_column}_{p}" for p in PURPOSES)}
    return [c for c in present if c in wanted]


def scope_frame(engine: Engine, names: list[str], policy: ProtectionPolicy, purpose: str | None,
                register: ErasureRegister, tokenizer: Tokenizer | None = None,
                where: str = "customers") -> tuple[pd.DataFrame, dict[str, int]]:
    """The allowed customers (raw id, general consent flag) and what was excluded (counts only). ``tokenizer``: a
    memoizing one shared with whoever tokenizes the scans' results (each id's HMAC is computed once); ``where``:
    the customers table's source, named in a validation error."""
    if "customers" in names:
        columns = _consent_columns(policy, engine.columns("raw_customers"))
        listed = ", ".join(f'"{c}"' for c in columns)
        ids = engine.query(f"SELECT {_id_sql(engine, 'customers')} AS customer_id{', ' if columns else ''}{listed} "
                           "FROM raw_customers")
        mask = consent_mask(ids, purpose, column=policy.consent_column, purpose_columns=policy.consent_purposes,
                            missing=policy.missing_consent)
        assert mask is not None
        consenting = mask.to_numpy(dtype=bool)
        # the canonical ``consent`` flag as the pandas view's customers table holds it; without one the purpose's
        # consent decided alone (a task's "consented customers only" then adds nothing, as in pandas)
        general = (consent_flags(ids["consent"], "consent") if "consent" in ids.columns
                   else pd.Series(True, index=ids.index, dtype="boolean"))
    else:
        unions = " UNION ".join(f"SELECT {_id_sql(engine, t)} AS customer_id FROM raw_{t}"
                                for t in PEOPLE_TABLES if t in names)
        if not unions:
            raise ConfigError("the partner has no customers, transactions, interactions or events table")
        ids = engine.query(unions)
        consenting = np.full(len(ids), policy.missing_consent == "allow")
        general = pd.Series(True, index=ids.index, dtype="boolean")
    raw = ids["customer_id"].astype("string")
    if "customers" in names:
        _check_unique(raw, where)
    forgotten = _forgotten(raw, consenting, policy, register, tokenizer)
    allowed = consenting & ~forgotten
    scope = pd.DataFrame({"customer_id": raw[allowed].astype(object).to_numpy(),
                          "consent": general[allowed].astype(object).where(general[allowed].notna(), None).to_numpy()})
    counts = {"customers_loaded": int(len(raw)), "excluded_no_consent": int((~consenting).sum()),
              "excluded_erased": int((forgotten & consenting).sum()), "customers_used": int(allowed.sum())}
    return scope, counts


def _forgotten(raw: pd.Series, consenting: np.ndarray, policy: ProtectionPolicy, register: ErasureRegister,
               tokenizer: Tokenizer | None) -> np.ndarray:
    """Which of the consenting customers ``raw`` were erased. Only they are tokenized (an opted-out customer is out
    of scope either way), and none when the register lists nobody: an HMAC per customer was the largest part of a
    scan's set-up at millions of customers (the tokens a result needs are made for it, by the shared memo)."""
    forgotten = np.zeros(len(raw), dtype=bool)
    if not register.key_ids():
        return forgotten
    tokenizer = tokenizer or Tokenizer(policy.tokenization_ring(), memo=True)
    asked = raw[consenting]
    active = tokenizer.tokenize(asked).to_numpy(dtype=object)
    retired = {k.key_id: tokenizer.tokenize(asked, key_id=k.key_id).to_numpy(dtype=object)
               for k in tokenizer.ring.retired}
    erased = erased_among(register, policy, tokenizer.key_id, active, retired)
    forgotten[np.flatnonzero(consenting)] = np.fromiter((t in erased for t in active), dtype=bool, count=len(active))
    return forgotten


def _check_unique(ids: pd.Series, where: str) -> None:
    """One customer per id in the customers table (trimmed, as the tokenizer trims), else one DataValidationError
    in the pandas validation's words, naming the source and the repeated ids. Why here: every scan joins on the
    id, so a repeated customer would be counted twice (or its attributes picked at random) in every release; the
    ids are already in memory for consent, so the check costs one hash pass."""
    repeated = (ids.duplicated(keep="first") & ids.notna()).to_numpy(dtype=bool)
    if not repeated.any():
        return
    shown = tuple(dict.fromkeys(str(v) for v in ids[repeated]))[:5]
    raise DataValidationError(Problem(where, f"duplicate key (customer_id must be unique) in {int(repeated.sum())} "
                                      "row(s)", column=CUSTOMER_KEY, values=shown))


def raw_ids(engine: Engine, sources: Mapping[str, Source]) -> pd.Series:
    """Every customer id of the partner's sources once, trimmed (its customers table's, else the people tables'):
    the partner's own ids, for its own exports (:meth:`PartnerView.identities`). Per customer, never row-level."""
    names = [n for n in TABLES if n in sources and (n == "customers" or n in PEOPLE_TABLES)]
    for name in names:
        engine.register(f"raw_{name}", sources[name])
    if "customers" in names:
        sql = f"SELECT {_id_sql(engine, 'customers')} AS customer_id FROM raw_customers"
    elif names:
        sql = " UNION ".join(f"SELECT {_id_sql(engine, t)} AS customer_id FROM raw_{t}" for t in names)
    else:
        return pd.Series([], dtype="string")
    return engine.query(sql)["customer_id"].astype("string")


def prepare(engine: Engine, sources: Mapping[str, Source], policy: ProtectionPolicy, purpose: str | None,
            register: ErasureRegister, rate: float = 1.0, tokenizer: Tokenizer | None = None) -> dict[str, int]:
    """Register and protect a partner's tables in ``engine`` (see the module docstring); returns the counts of
    customers loaded, excluded and used (they stay on the partner)."""
    names = [n for n in TABLES if n in sources]
    per_table = {name: _stamps(sources, [name]) for name in names}  # one walk of each table's files per scan
    stamps = None if None in per_table.values() else tuple(f for s in per_table.values() for f in s or ())
    for name in names:
        engine.register(f"raw_{name}", sources[name])
    _check_pii(engine, names, policy, sources, stamps)
    for name in names:
        engine.create_view(f"typed_{name}", typed_sql(TABLES[name], engine.column_types(f"raw_{name}"), policy, rate,
                                                      unpadded=per_table[name] in _UNPADDED))
    listed = sources["customers"].describe() if "customers" in sources else "customers"
    scope, counts = scope_frame(engine, names, policy, purpose, register, tokenizer, listed)
    engine.register("scope", FrameTable(scope.astype({"consent": "boolean"})))
    in_scope = "customer_id IN (SELECT customer_id FROM scope)"
    if "customers" in names:
        engine.create_view("customers", "SELECT c.*, s.consent FROM typed_customers AS c JOIN scope AS s "
                                        "ON c.customer_id = s.customer_id")
    else:
        engine.create_view("customers", "SELECT customer_id, consent FROM scope")
    for name in TABLES:
        if name == "customers":
            continue
        if name not in names:  # an absent table is an empty one: a scan over it sees no rows
            engine.create_view(name, empty_sql(TABLES[name]))
            continue
        columns = engine.columns(f"typed_{name}")
        where = f" WHERE {in_scope}" if CUSTOMER_KEY in columns else ""
        engine.create_view(name, f"SELECT * FROM typed_{name}{where}")
    return counts


# --- the partner's own personal columns, for its own exports only --------------------------------------------


@dataclass(frozen=True)
class RawColumns:
    """What a partner's raw tables hold, for choosing the column its own target list reaches customers by."""

    columns: dict[str, list[str]]  # table -> its raw columns, in the source's order
    findings: tuple[PiiFinding, ...]  # the PII sample's findings (:func:`_check_pii`), by table and column order
    ids: dict[str, list[str]]  # table with a customer id -> the distinct ids of its sample, first seen first


def raw_columns(engine: Engine, sources: Mapping[str, Source], policy: ProtectionPolicy) -> RawColumns:
    """The raw tables' headers, the personal data the PII check finds in its sample of each (the same
    ``PII_SAMPLE_ROWS`` first rows, memoized as the check is; undeclared personal data raises as it does), and the
    customer ids of that sample. Nothing is read whole: no table's rows beyond the sample."""
    names = [n for n in TABLES if n in sources]
    stamps = _stamps(sources, names)
    for name in names:
        engine.register(f"raw_{name}", sources[name])
    decisions = _check_pii(engine, names, policy, sources, stamps)
    columns = {name: engine.columns(f"raw_{name}") for name in names}
    ids: dict[str, list[str]] = {}
    for name in names:
        if CUSTOMER_KEY in columns[name]:
            sample = engine.query(f'SELECT CAST("{CUSTOMER_KEY}" AS VARCHAR) AS customer_id FROM raw_{name} '
                                  f"LIMIT {PII_SAMPLE_ROWS}")["customer_id"]
            ids[name] = [str(v) for v in pd.unique(sample.dropna().astype(str).to_numpy())]
    return RawColumns(columns, tuple(d.finding for d in decisions if d.finding is not None), ids)


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def latest_values(engine: Engine, sources: Mapping[str, Source], table: str, column: str) -> pd.DataFrame:
    """Per customer of the raw table ``table`` (ids trimmed as every relation trims them), the latest non-empty
    value of its raw ``column`` (trimmed; blank is empty): by ``timestamp`` when the table has one (a row without
    one is older than any with one), and among values at the same latest time -- or of a table without time --
    the largest (code-point order, which DuckDB, Spark and Python share). Columns ``customer_id``, ``own_value``.

    Why this exists: a target list must say how to reach each customer, and the contact (an e-mail, a phone) is
    exactly the personal data the protection policy drops from the protected relations, so no task's scan can
    read it (by design). This read is the partner's alone: :mod:`fedinsight.partner.contacts` calls it to write the
    partner's own file on the partner's own machine; its result is never part of a scan, a release or a message.
    Why the largest value on a tie: the rule it replaced ("the last row in the file") depends on the order an
    export happened to be written in, which no engine reproduces."""
    if table not in sources:
        raise ConfigError(f"the partner has no {table} table")
    engine.register(f"raw_{table}", sources[table])
    types = engine.column_types(f"raw_{table}")
    if column not in types or CUSTOMER_KEY not in types:
        missing = column if column not in types else CUSTOMER_KEY
        raise ConfigError(f"the partner's {table} table has no column {missing}")
    key = _cast(CUSTOMER_KEY, "string", types[CUSTOMER_KEY])
    value = key if column == CUSTOMER_KEY else f"NULLIF({stripped_sql(_text(_quoted(column), types[column]))}, '')"
    order = ""
    if "timestamp" in types:
        kind = types["timestamp"]
        when = ('"timestamp"' if kind.startswith("timestamp") or kind == "date"
                else "CAST(CAST(\"timestamp\" AS TIMESTAMPTZ) AS TIMESTAMP)")
        order = f"{when} DESC NULLS LAST, "
    rows = (f"SELECT {key} AS customer_id, {value} AS own_value, ROW_NUMBER() OVER (PARTITION BY {key} "
            f"ORDER BY {order}{value} DESC) AS newest FROM raw_{table} WHERE {value} IS NOT NULL AND {key} <> ''")
    return engine.query(f"SELECT customer_id, own_value FROM ({rows}) AS ranked WHERE newest = 1")
