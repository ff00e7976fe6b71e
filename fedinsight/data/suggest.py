"""A draft ``mapping.toml`` for a folder of a partner's own exports (``fedinsight partner map --suggest``).

Why a draft and not magic: which file is the order table, which column is the customer, which zone the
timestamps are in are facts about the partner's systems that only its data engineer can confirm. The draft
gets the mechanical part right -- headers matched against Chinese and English names (:mod:`.synonyms`), date
formats, amounts with currency marks, order lines (a repeated order id becomes ``group_by``), value maps for
consent and funnel stages, the time zone from UTC offsets in the data -- and says, in comments marked CHECK,
what to confirm. For exports like a Chinese retailer's or a Shopify shop's it reads as written.

How it decides, in order: files with the same header are one table (one glob); each file group is matched to
the canonical table its columns fit best; columns are assigned by header and value pattern; the customer id is
chosen across tables so that the ids of orders and events are found in the customers table.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fedinsight.data.mapping import MAPPING_FILE
from fedinsight.data.profile import ColumnProfile, FileProfile, profile_file, zones_for_offsets
from fedinsight.data.schema import FUNNEL_STAGES, SUPPORTED_SUFFIXES, TABLES
from fedinsight.data.synonyms import AMBIGUOUS_SYMBOLS, consent_of, header_score, identifier_kind, normalize, stage_of

CANDIDATES: dict[str, tuple[str, ...]] = {
    # canonical columns a draft fills per table (customer_id is chosen across tables)
    "transactions": ("transaction_id", "timestamp", "amount", "quantity", "category", "channel"),
    "customers": ("consent", "age", "gender", "region", "zip_code", "occupation", "signup_date"),
    "events": ("event_id", "timestamp", "campaign", "channel", "stage", "arm"),
    "interactions": ("item_id", "timestamp", "rating"),
    "items": ("item_id", "title", "year", "genres", "category", "price"),
}
NEEDS: dict[str, tuple[str, ...]] = {
    # what a file group must have for the draft to call it this table
    "transactions": ("timestamp", "amount"),
    "customers": (),
    "events": ("timestamp", "stage"),
    "interactions": ("item_id", "timestamp"),
    "items": ("item_id",),
}
CUSTOMER_TABLES = ("transactions", "customers", "events", "interactions")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_PERSON_HEADERS = ("姓名", "名字", "收货人", "联系人", "收件人", "name")
_PERSON_SUFFIXES = ("firstname", "lastname", "fullname", "billingname", "shippingname", "customername", "contactname",
                    "surname", "givenname")
_ADDRESS_SUFFIXES = ("address", "address1", "address2", "street")


@dataclass
class TableDraft:
    """One table of the draft: its files, column choices and notes."""

    table: str
    group: list[FileProfile]
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> source
    score: float = 0.0
    group_by: str | None = None
    timestamp_format: str | None = None
    decimal: str = "."
    delimiter: str = ","
    values: dict[str, dict[str, object]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # canonical -> comment
    checks: list[str] = field(default_factory=list)

    @property
    def profile(self) -> FileProfile:
        return self.group[0]

    def column(self, canonical: str) -> ColumnProfile | None:
        source = self.columns.get(canonical)
        return self.profile.columns.get(source) if source is not None else None


@dataclass
class Suggestion:
    """The draft: its TOML text and what it found (the CLI shows these)."""

    text: str
    tables: dict[str, TableDraft]
    timezone: str | None
    currency: str | None
    checks: list[str]
    unreadable: dict[str, str]  # file -> why
    unassigned: list[str]


# --- scoring -------------------------------------------------------------------------------------------------


def _compatible(canonical: str, p: ColumnProfile) -> bool:
    if not p.distinct:
        return False
    if canonical in ("timestamp", "signup_date"):
        return p.is_date
    if p.is_date:
        return False
    if canonical in ("amount", "price", "rating"):
        return p.is_number
    if canonical in ("quantity", "age", "year"):
        return p.is_number and p.is_int
    if canonical == "consent":
        return p.consent
    if canonical == "stage":
        return p.stage_share >= 0.5
    if canonical == "arm":
        return p.n_distinct <= 6
    if canonical in ("channel", "gender"):
        return p.n_distinct <= 60 and p.identifier is None
    if canonical in ("transaction_id", "event_id", "item_id"):
        return p.identifier is None
    return p.identifier is None and not p.is_number or canonical in ("zip_code", "region", "category")


def _score(canonical: str, p: ColumnProfile) -> float:
    if not _compatible(canonical, p):
        return 0.0
    score = header_score(canonical, p.name)
    if canonical == "transaction_id" and p.order_numbers:
        score = max(score, 0.9)
    if canonical == "stage" and p.stage_share >= 0.8:
        score = max(score, 0.5)
    if canonical == "consent" and p.consent:
        score = max(score, 0.4)
    if canonical == "arm" and p.arm_like:
        score = max(score, 0.4) + 0.1
    if canonical in ("timestamp", "signup_date") and score == 0:
        score = 0.2
    if canonical == "amount" and p.currencies:
        score += 0.2
    return score


def _assign(table: str, profile: FileProfile) -> TableDraft:
    """Greedy: the best-scoring (canonical, source) pairs first, each source column used once."""
    pairs = sorted(((_score(c, p), c, name) for c in CANDIDATES[table] for name, p in profile.columns.items()),
                   key=lambda t: -t[0])
    draft = TableDraft(table, [profile])
    used: set[str] = set()
    for score, canonical, name in pairs:
        if score <= 0 or canonical in draft.columns or name in used:
            continue
        draft.columns[canonical] = name
        used.add(name)
        draft.score += score
    if not all(n in draft.columns for n in NEEDS[table]):
        draft.score = 0.0
    elif table == "items" and _customer_candidates(profile):
        draft.score = 0.0  # a catalogue holds no customers
    elif table == "customers":
        unique = [c for c, _ in _customer_candidates(profile) if profile.columns[c].unique]
        has_customer_facts = any(c in draft.columns for c in ("consent", "age", "gender", "signup_date"))
        draft.score = draft.score + 0.5 if unique and has_customer_facts else 0.0
    return draft


def _customer_candidates(profile: FileProfile) -> list[tuple[str, float]]:
    """(source column, strength): a customer number beats an e-mail address beats a phone number."""
    out = []
    for name, p in profile.columns.items():
        if p.is_date or not p.distinct:
            continue
        score = header_score("customer_id", name)
        kind = p.identifier or identifier_kind(name)
        if score >= 0.5:
            out.append((name, 2 + score))
        elif kind == "email":
            out.append((name, 1.5))
        elif kind == "phone":
            out.append((name, 1.4))
    return sorted(out, key=lambda t: -t[1])


def _overlap(a: FileProfile, col_a: str, b: FileProfile, col_b: str) -> float:
    mine = set(a.frame[col_a].dropna().astype("str").str.strip().unique())
    theirs = set(b.frame[col_b].dropna().astype("str").str.strip().unique())
    return len(mine & theirs) / len(mine) if mine else 0.0


def _choose_customer_ids(drafts: dict[str, TableDraft]) -> None:
    """The customer id of each table, chosen so that other tables' ids are found in the customers table."""
    with_customers = {t: d for t, d in drafts.items() if t in CUSTOMER_TABLES}
    if not with_customers:
        return
    customers = with_customers.get("customers")
    if customers is not None:
        options = [c for c, _ in _customer_candidates(customers.profile) if customers.profile.columns[c].unique]
        def total(col: str) -> float:
            return sum(max((_overlap(d.profile, o, customers.profile, col) for o, _ in
                            _customer_candidates(d.profile)), default=0.0)
                       for t, d in with_customers.items() if t != "customers")
        ranked = sorted(options, key=lambda c: (-total(c), options.index(c)))
        if ranked:
            chosen = ranked[0]
            customers.columns["customer_id"] = chosen
            for t, d in with_customers.items():
                if t == "customers":
                    continue
                cands = _customer_candidates(d.profile)
                if cands:
                    best = max(cands, key=lambda c: (_overlap(d.profile, c[0], customers.profile, chosen), c[1]))
                    d.columns["customer_id"] = best[0]
    common: dict[str, int] = {}
    for d in with_customers.values():
        for c, _ in _customer_candidates(d.profile):
            common[c] = common.get(c, 0) + 1
    for d in with_customers.values():
        if "customer_id" not in d.columns:
            cands = _customer_candidates(d.profile)
            if cands:
                d.columns["customer_id"] = max(cands, key=lambda c: (common.get(c[0], 0), c[1]))[0]
    for d in with_customers.values():
        source = d.columns.get("customer_id")
        if source is None:
            d.checks.append(f"[tables.{d.table}] has no customer column: set customer_id = \"<column>\"")
            continue
        for canonical, other in list(d.columns.items()):  # a column cannot be both the customer and something else
            if canonical != "customer_id" and other == source:
                del d.columns[canonical]
        kind = d.profile.columns[source].identifier or identifier_kind(source)
        if kind is not None:
            what = "phone numbers" if kind == "phone" else "e-mail addresses"
            d.notes["customer_id"] = f"{what}: the customer id is tokenized on every read and never leaves " \
                                     "this machine"


# --- file groups and globs ------------------------------------------------------------------------------------


def _data_files(folder: Path, exclude: set[Path]) -> list[Path]:
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path in exclude or not path.is_file():
            continue
        if path.suffix.lower() in SUPPORTED_SUFFIXES:
            out.append(path)
    return out


def _glob(group: list[Path], everything: list[Path], base: Path) -> list[str]:
    """One glob matching exactly the group's files (``订单明细_*.csv``), else the files' names."""
    names = [os.path.relpath(p, base) for p in group]
    if len(names) == 1:
        return names
    prefix = os.path.commonprefix(names).rstrip("0123456789")  # 订单明细_2024, 订单明细_2025 -> 订单明细_*
    suffix = os.path.commonprefix([n[::-1] for n in names])[::-1].lstrip("0123456789")
    pattern = prefix + "*" + suffix[max(0, len(prefix) + len(suffix) - min(map(len, names))):]
    matched = {p for p in everything if fnmatch.fnmatch(os.path.relpath(p, base), pattern)}
    return [pattern] if matched == set(group) else names


# --- the draft --------------------------------------------------------------------------------------------------


def suggest_mapping(folder: str | Path, out: str | Path | None = None) -> Suggestion:
    """A draft mapping for the exports in ``folder`` whose globs are relative to ``out`` (default
    ``folder/mapping.toml``). Reads only; the caller writes the text."""
    folder = Path(folder).absolute()
    target = Path(out).absolute() if out is not None else folder / MAPPING_FILE
    files = _data_files(folder, {target})
    profiles: dict[Path, FileProfile] = {}
    unreadable: dict[str, str] = {}
    for path in files:
        result = profile_file(path)
        if isinstance(result, str):
            unreadable[str(path.relative_to(folder))] = result
        else:
            profiles[path] = result
    groups: dict[tuple[str, ...], list[FileProfile]] = {}
    for profile in profiles.values():
        groups.setdefault(tuple(profile.headers), []).append(profile)
    drafts = _tables_for(groups)
    _choose_customer_ids(drafts)
    for draft in drafts.values():
        _finish(draft)
    assigned = {p.path for d in drafts.values() for p in d.group}
    unassigned = [str(p.relative_to(folder)) for p in profiles if p not in assigned]
    timezone, zone_line = _timezone(drafts)
    currency, currency_line = _currency(drafts)
    checks = [c for d in drafts.values() for c in d.checks]
    if timezone is None:
        checks.insert(0, "timezone: the time zone of timestamps written without a UTC offset")
    if currency is None and "transactions" in drafts:
        checks.insert(0, "currency: the ISO 4217 code of the amounts")
    text = _render(folder, target, drafts, files, zone_line, currency_line, unreadable, unassigned)
    return Suggestion(text, drafts, timezone, currency, checks, unreadable, unassigned)


def _tables_for(groups: dict[tuple[str, ...], list[FileProfile]]) -> dict[str, TableDraft]:
    """Each file group as the table its columns fit best (each table at most once, the best group wins)."""
    options = []
    for group in groups.values():
        for table in TABLES:
            draft = _assign(table, group[0])
            draft.group = group
            if draft.score > 0:
                options.append(draft)
    chosen: dict[str, TableDraft] = {}
    taken: set[int] = set()
    for draft in sorted(options, key=lambda d: -d.score):
        if draft.table in chosen or id(draft.group) in taken:
            continue
        chosen[draft.table] = draft
        taken.add(id(draft.group))
    return {t: chosen[t] for t in TABLES if t in chosen}


def _finish(draft: TableDraft) -> None:
    """Order lines, date format, decimal mark, delimiter, value maps and notes of one table."""
    profile = draft.profile
    draft.delimiter = profile.delimiter or ","
    tx_id = draft.column("transaction_id")
    if draft.table == "transactions" and tx_id is not None and tx_id.repeats:
        draft.group_by = tx_id.name
        amount = draft.column("amount")
        if amount is not None:
            per_order = profile.frame.groupby(tx_id.name)[amount.name]
            filled = per_order.count()
            constant = per_order.nunique() == 1
            multi = profile.frame[tx_id.name].value_counts() > 1
            if bool(((filled > 1) & constant & multi.reindex(filled.index, fill_value=False)).all()) and \
                    multi.any():
                draft.checks.append(f"{amount.name} repeats the same value on every line of an order: if it is the "
                                    "order's total (not the line's), lines would be summed to a multiple of it -- map "
                                    "a per-line amount instead")
    time_column = draft.column("timestamp") or draft.column("signup_date")
    if time_column is not None:
        draft.timestamp_format = time_column.date_format
        if time_column.ambiguous_date:
            draft.checks.append(f"{time_column.name}: day and month are both <= 12 in every value; the draft reads "
                                f"{time_column.date_format} (month first): swap %m and %d if days come first")
    amount = draft.column("amount") or draft.column("price")
    if amount is not None:
        draft.decimal = amount.decimal
    consent = draft.column("consent")
    if consent is not None:
        mapped: dict[str, object] = {}
        for value in consent.distinct[:20]:
            meaning = consent_of(value)
            mapped[value] = meaning if meaning is not None else False
            if meaning is None:
                draft.checks.append(f"{consent.name} value '{value}': read as no consent")
        draft.values["consent"] = mapped
    stage = draft.column("stage")
    if stage is not None and not {v.lower() for v in stage.distinct} <= set(FUNNEL_STAGES):
        stages: dict[str, object] = {}
        for value in stage.distinct[:30]:
            meaning = stage_of(value)
            stages[value] = meaning or ""
            if meaning is None:
                draft.checks.append(f"{stage.name} value '{value}': map it to one of {', '.join(FUNNEL_STAGES)}")
        draft.values["stage"] = stages
    required = [c for c in TABLES[draft.table].required_columns if c not in draft.columns]
    for canonical in required:
        draft.checks.append(f"[tables.{draft.table}.columns] needs {canonical} = \"<column>\" (required)")


def _timezone(drafts: dict[str, TableDraft]) -> tuple[str | None, str]:
    samples: list[tuple[datetime, int]] = []
    where: list[str] = []
    for d in drafts.values():
        for canonical in ("timestamp", "signup_date"):
            column = d.column(canonical)
            if column is not None and column.offsets:
                samples += column.offsets
                where.append(f"{column.name} ({d.profile.path.name})")
    if samples:
        zones = zones_for_offsets(samples)
        offsets = sorted({_offset_text(o) for _, o in samples})
        if zones:
            also = f"; also fits {', '.join(zones[1:4])}" if len(zones) > 1 else ""
            return zones[0], (f'timezone = "{zones[0]}"   # from the UTC offsets {", ".join(offsets)} in '
                              f'{", ".join(where)}{also}. CHECK: the zone of timestamps written without an offset')
    guess = "UTC"
    headers = [h for d in drafts.values() for h in d.profile.headers]
    currencies = {c for d in drafts.values() for p in d.profile.columns.values() for c in p.currencies}
    if any(_CJK.search(h) for h in headers) or currencies & {"CNY"}:
        guess = "Asia/Shanghai"
    elif currencies == {"USD"}:
        guess = "America/New_York"
    elif currencies == {"EUR"}:
        guess = "Europe/Berlin"
    return None, (f'# timezone = "{guess}"   # CHECK: the IANA zone your timestamps are written in (none carries a '
                  'UTC offset); without this line they are read as UTC')


def _offset_text(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _currency(drafts: dict[str, TableDraft]) -> tuple[str | None, str]:
    found: dict[str, set[str]] = {}
    columns: dict[str, set[str]] = {}
    for d in drafts.values():
        for canonical in ("amount", "price"):
            column = d.column(canonical)
            if column is not None:
                for code in column.currencies:
                    found.setdefault(code, set()).update(column.marks)
        for name, p in d.profile.columns.items():  # a "Currency" / 币种 column of ISO codes
            if normalize(name) in ("currency", "币种", "货币") and p.n_distinct == 1 and len(p.distinct[0]) == 3:
                found.setdefault(p.distinct[0].upper(), set())
                columns.setdefault(p.distinct[0].upper(), set()).add(name)
    if len(found) == 1:
        code, marks = next(iter(found.items()))
        evidence = [f"{', '.join(sorted(marks))} in the amounts"] if marks else []
        evidence += [f"the {c} column" for c in sorted(columns.get(code, ()))]
        unsure = [AMBIGUOUS_SYMBOLS[m] for m in marks if m in AMBIGUOUS_SYMBOLS]
        note = f"   # from {' and '.join(evidence)}" + (
            f"; CHECK: {sorted(marks)[0]} is {unsure[0]}" if unsure and not columns.get(code) else "")
        return code, f'currency = "{code}"{note}'
    what = f"the amounts carry {', '.join(sorted(found))}" if found else "no currency mark in the amounts"
    return None, f'# currency = "CNY"   # CHECK: the ISO 4217 code of your amounts ({what})'


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _q(str(value))


def _unmapped_note(draft: TableDraft) -> str | None:
    used = set(draft.columns.values()) | ({draft.group_by} if draft.group_by else set())
    rest = [h for h in draft.profile.headers if h not in used]
    if not rest:
        return None
    shown = []
    for name in rest:
        p = draft.profile.columns[name]
        kind = p.identifier or identifier_kind(name)
        n = normalize(name)
        if kind == "email":
            shown.append(f"{name} (e-mail addresses)")
        elif kind == "phone":
            shown.append(f"{name} (phone numbers)")
        elif n in _PERSON_HEADERS or n.endswith(_PERSON_SUFFIXES) or "姓名" in n:
            shown.append(f"{name} (a person's name)")
        elif "地址" in n or n.endswith(_ADDRESS_SUFFIXES):
            shown.append(f"{name} (an address)")
        else:
            shown.append(name)
    return ("# not mapped, kept under their own names: " + ", ".join(shown) + ". Personal data among them must be "
            "declared in protection.toml ('fedinsight partner init --data FOLDER' declares what it detects as drop)")


def _render(folder: Path, target: Path, drafts: dict[str, TableDraft], files: list[Path], zone_line: str,
            currency_line: str, unreadable: dict[str, str], unassigned: list[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Draft mapping written by 'fedinsight partner map --suggest' ({stamp}) from the files in {folder}.",
        "# It says how this partner's own exports are read as fedinsight's tables; the files are never changed.",
        "# Check every line marked CHECK, then run: fedinsight data validate " + str(folder),
        "# Every key is explained in docs/data.md, \"Your own exports: the mapping\".",
        "",
        zone_line,
        currency_line,
    ]
    gb = sorted({p.path.name for d in drafts.values() for p in d.group if p.encoding == "gb18030"})
    if gb:
        lines.append(f"# {', '.join(gb)}: GB18030 text (read automatically, as UTF-8 files are)")
    for table, d in drafts.items():
        globs = _glob([p.path for p in d.group], files, target.parent)
        rows = sum(p.rows for p in d.group)
        lines += ["", f"[tables.{table}]", f"files = [{', '.join(_q(g) for g in globs)}]   # {len(d.group)} file(s), "
                                                       f"{rows:,} row(s) read"]
        if d.group_by:
            lines.append(f"group_by = {_q(d.group_by)}   # an order spans several lines: one transaction per order, "
                         "amount and quantity summed, the earliest time, other columns from its first line")
        if d.timestamp_format:
            lines.append(f"timestamp_format = {_q(d.timestamp_format)}")
        if d.decimal != ".":
            lines.append(f"decimal = {_q(d.decimal)}")
        if d.delimiter not in (",", ""):
            lines.append(f"delimiter = {_q(d.delimiter)}")
        lines += ["", f"[tables.{table}.columns]"]
        order = ["transaction_id", "event_id", "customer_id", "item_id", *CANDIDATES[table]]
        for canonical in dict.fromkeys(order):
            if canonical in d.columns:
                note = f"   # {d.notes[canonical]}" if canonical in d.notes else ""
                lines.append(f"{canonical} = {_q(d.columns[canonical])}{note}")
        for canonical in TABLES[table].required_columns:
            if canonical not in d.columns:
                lines.append(f"# {canonical} = \"<column>\"   # CHECK: required, no column looked like it")
        note = _unmapped_note(d)
        if note:
            lines.append(note)
        for canonical, values in d.values.items():
            lines += ["", f"[tables.{table}.values.{canonical}]"]
            for source, value in values.items():
                check = "   # CHECK" if value == "" or (canonical == "consent" and consent_of(source) is None) else ""
                lines.append(f"{_q(source)} = {_toml_value(value)}{check}")
        for check in d.checks:
            lines.append(f"# CHECK: {check}")
    if unassigned:
        lines += ["", f"# not mapped (could not tell which table they hold): {', '.join(unassigned)}"]
    if unreadable:
        lines += ["", "# could not be read: " + "; ".join(f"{k}: {v}" for k, v in unreadable.items())]
    return "\n".join(lines) + "\n"
