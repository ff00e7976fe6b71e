"""The partner data view: the one door through which any task reads a partner's customer data.

:class:`PartnerView` applies, in this order and on every read:

1. the partner's **mapping** (``mapping.toml`` beside its files, or ``--node-config mapping=FILE``): its own
   exports read as the canonical tables, time zone and currency recorded in ``meta``; then **validation**
   against the canonical schema (every problem at once);
2. the **protection policy** (``protection.toml``): undeclared personal data stops the load, declared
   identifier columns are dropped or tokenized, customer ids are always tokenized (HMAC under the
   partner's key); raw frames are dropped right after;
3. **consent** for the task's purpose (analytics, training, recommendation);
4. the **erasure register**: customers forgotten with ``fedinsight partner forget`` are removed from every
   table, for every purpose, from the next read on;
5. the job's **rate table** (:mod:`fedinsight.data.currency`), when it declares one: money columns are converted
   from the partner's declared currency to the job's reporting currency. A currency the table does not cover
   is refused when the view is opened (in hello: before anything is computed or charged).

Steps 1-2 are cached per process (tokens only: a Ray actor or SuperNode serves many rounds of a job);
3-4 run on every read, so a ``partner forget`` takes effect for the next message even on a long-running
SuperNode. No task opens partner files itself: training, evaluation, local aggregates, scoring, serving
and exports all read through here.

Where a partner's data is: a deployed partner names its folder (``--node-config data-path=...``, and its
mapping with ``mapping=...`` when it is not ``<data-path>/mapping.toml``); a simulated partner with
``partition-id`` k reads the k-th partner folder (in name order) under the job's ``data-root``, whatever the
folders and files are called, in place, through the folder's own ``mapping.toml`` -- nothing is copied.

:meth:`PartnerView.scan` is the lazy door (:mod:`fedinsight.partner.engine`): a task's
:class:`~fedinsight.federation.scan.Scan` runs inside the partner's engine (DuckDB by default, Spark by node
config) over the same protected tables -- policy, consent and erasure applied inside the engine -- and only its
small result, customer ids tokenized, comes back as pandas. A plain folder (canonical file names, Parquet
directories) or a database (``db-url``) is scanned where it lies, out of core; a folder with a ``mapping.toml`` is
read through the mapping's transforms by the pandas reader first (those transforms are pandas code today), then
scanned.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.currency import RateTable, convert
from fedinsight.data.federation import load_partner_folder, partner_folders
from fedinsight.data.mapping import PartnerMapping, find_mapping
from fedinsight.data.schema import PartnerData
from fedinsight.federation.scan import Scan
from fedinsight.partner.engine import EngineSettings, FrameTable, Source
from fedinsight.partner.engine.relations import RawColumns
from fedinsight.partner.engine.runner import (
    run_latest_values,
    run_raw_columns,
    run_raw_ids,
    run_scans,
    run_schema,
    run_type_check,
)
from fedinsight.partner.engine.sources import (
    CsvFile,
    FileStamp,
    ParquetFiles,
    database_sources,
    files_stamp,
    folder_sources,
)
from fedinsight.partner.engine.sql_stream import database_tables
from fedinsight.partner.policy import ProtectionPolicy, find_policy
from fedinsight.partner.protection import ProtectedPartner, customer_ids, load_protected
from fedinsight.partner.vault import PartnerVault
from fedinsight.privacy.consent import PURPOSES, ErasureRegister, erasure_register
from fedinsight.privacy.tokenize import Tokenizer

CUSTOMER_COUNT = Scan("partner.customer_count", "SELECT COUNT(DISTINCT customer_id) AS customers FROM customers",
                      ("customers",))
"""The customers a purpose may use: the engine's ``customers`` relation is the in-scope customers (the customers
table semi-joined on consent and erasure, or the ids of the people tables when there is none)."""

_CACHE: OrderedDict[tuple[str, str, str, object], ProtectedPartner] = OrderedDict()
# A deployed SuperNode serves one partner; a simulation's Ray actor serves every partner in turn, round after
# round. The bound must exceed the partners of any simulation, or a round-robin over k > size partners misses
# on every read (each round would re-read and re-tokenize every folder: 7x slower at 10 partners with 8).
_CACHE_SIZE = 1024  # > MAX_PARTNERS (federation/simulation.py): 1,000 simulated partners stay warm


def _protected(folder: Path, policy: ProtectionPolicy, mapping: PartnerMapping | None) -> ProtectedPartner:
    """Cached per process; a changed policy, key ring or mapping (or the files it matches) reloads."""
    # the files' stamps too (a mapping's fingerprint holds them): an opt-out written in place, same size, is read
    try:
        files: object = mapping.fingerprint if mapping is not None else _files_key(folder_sources(folder))
    except OSError:  # a folder or file gone: read (and refused) as it stands, never kept
        return load_protected(folder, policy, mapping=mapping.path if mapping is not None else None)
    key = (str(folder.resolve()), policy.fingerprint, policy.tokenization_ring().fingerprint, files)
    if key not in _CACHE:
        _CACHE[key] = load_protected(folder, policy, mapping=mapping.path if mapping is not None else None)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


_MAPPED: OrderedDict[tuple[str, str], dict[str, pd.DataFrame]] = OrderedDict()
_MAPPED_SIZE = 16
"""Raw mapped tables kept per process for the engine: a hello reads the schema, counts, checks and discovers, each
through :meth:`PartnerView.sources`, and the mapping's transforms are pandas code; a small bound, as these are the
partner's raw rows (a deployed SuperNode serves one partner)."""


def _mapped_tables(folder: Path, mapping: PartnerMapping) -> dict[str, pd.DataFrame]:
    """The mapped folder's canonical tables, cached; a changed mapping (or the files it matches) reloads."""
    key = (str(folder.resolve()), mapping.fingerprint)
    if key not in _MAPPED:
        raw = next(iter(load_partner_folder(folder, mapping=mapping.path).values()))
        _MAPPED[key] = dict(raw.tables())  # type: ignore[arg-type]
        while len(_MAPPED) > _MAPPED_SIZE:
            _MAPPED.popitem(last=False)
    _MAPPED.move_to_end(key)
    return _MAPPED[key]


_CHECKED: set[tuple[tuple[str, int, int, int, int], ...]] = set()
"""Partner files whose typed columns passed :meth:`PartnerView.check_types` in this process, by :func:`_files_key`."""


def _files_key(sources: dict[str, Source]) -> tuple[FileStamp, ...]:
    """Every file behind ``sources`` stamped (:func:`~.engine.sources.files_stamp`: inode, size, modification and
    change times), the other sources left out: any write reads them again. The change time matters: a consent flipped
    from 1 to 0 keeps the file's size, and a tool may restore its modification time, but no one can set the change
    time back (and an atomic replace changes the inode)."""
    return files_stamp([s for s in sources.values() if isinstance(s, CsvFile | ParquetFiles)]) or ()


_RESULTS: OrderedDict[tuple[object, ...], list[pd.DataFrame]] = OrderedDict()
"""Scan results kept per process (:meth:`PartnerView.scans`): tokenized per-customer rows, like :data:`_CACHE`'s
protected tables, only on the partner. Bounded by :data:`_RESULTS_SIZE` entries (as many as :data:`_CACHE`: a
simulation's worker visits up to 1,000 partners in turn) and :data:`_RESULTS_BYTES` in all."""
_SIZES: dict[tuple[object, ...], int] = {}
"""Bytes of each kept result (pandas' deep memory usage), counted once when it is kept."""
_RESULTS_SIZE = 1024
_RESULTS_BYTES = 256 * 2**20
"""A result larger than a quarter of this is not kept (a 100 M-row partner's batch would double its memory)."""


def _forget_stale(key: tuple[object, ...]) -> None:
    """Drop the kept results of the same partner and purpose made before its data, policy or erasure register
    changed: an erased customer's rows leave memory at the next scan, not at eviction."""
    for old in [k for k in _RESULTS if k[0] == key[0] and k[4] == key[4] and k[1:8] != key[1:8]]:
        _drop(old)


def _drop(key: tuple[object, ...]) -> None:
    del _RESULTS[key]
    _SIZES.pop(key, None)


class PartnerView:
    """One partner's customer data for one purpose (see the module docstring)."""

    def __init__(self, folder: str | Path, purpose: str, *, policy_file: str | Path | None = None,
                 mapping_file: str | Path | None = None, rates: RateTable | None = None,
                 name: str | None = None, engine: EngineSettings | None = None) -> None:
        """``rates``: the job's rate table (``None``: amounts as held); ``name``: the partner as messages name it
        (default: its folder's name); ``engine``: the partner's engine settings (its node config; checked now,
        before anything is computed or charged)."""
        if purpose not in PURPOSES:
            raise ConfigError(f"unknown purpose '{purpose}', expected one of {', '.join(PURPOSES)}")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError(f"partner data folder {self.folder} does not exist")
        self.purpose = purpose
        self.policy = find_policy(self.folder, policy_file)
        self.mapping = find_mapping(self.folder, mapping_file)
        self.rates = rates
        if rates is not None:  # refused now, before any table is read for the job
            rates.rate(self.currency, partner=name or self.folder.name)
        self.engine = engine or EngineSettings()
        self.engine.check()

    @property
    def currency(self) -> str | None:
        """The currency the partner's mapping declares for its amounts (``None``: not declared)."""
        return self.mapping.currency if self.mapping is not None else None

    def tables(self) -> PartnerData:
        """The partner's tables: mapped, validated, protected, consent for the purpose, erased customers removed,
        amounts in the job's reporting currency."""
        protected = _protected(self.folder, self.policy, self.mapping)
        return convert(protected.for_purpose(self.purpose, erasure_register(self.policy.register_url)), self.rates)

    def sources(self) -> dict[str, Source]:
        """Where the engine reads the partner's canonical tables (see the module docstring)."""
        if self.engine.db_url:
            present = database_tables(self.engine.db_url)
            named = database_sources(self.engine.db_url, self.engine.db_tables)
            explicit = {part.split("=")[0].strip() for part in self.engine.db_tables.split(",") if "=" in part}
            if missing := sorted(n for n in explicit if named[n].table not in present):  # type: ignore[union-attr]
                raise ConfigError(f"node config db-tables: the database at db-url has no table "
                                  f"{', '.join(named[n].table for n in missing)}")  # type: ignore[union-attr]
            return {n: src for n, src in named.items() if src.table in present}  # type: ignore[union-attr]
        if self.mapping is None:
            return folder_sources(self.folder)
        return {n: FrameTable(frame) for n, frame in _mapped_tables(self.folder, self.mapping).items()}

    def scan(self, scan: Scan) -> pd.DataFrame:
        """``scan`` run by the partner's engine over its protected tables for this purpose; customer ids tokenized.
        Amounts are in the job's reporting currency, as :meth:`tables` gives them."""
        return self.scans([scan])[0]

    def scans(self, scans: list[Scan]) -> list[pd.DataFrame]:
        """Several scans over one preparation of the protected tables (see :func:`run_scans`). Small results are
        kept per process (:data:`_RESULTS`): a job asks the same scans at every message (segments' every k-means
        step, a secure training round), and preparing the protected tables costs seconds each time. The gain is
        where one process serves many messages (a simulation's workers, in-process runs); a deployed SuperNode
        starts a ClientApp process per message and pays the preparation each time, as it pays the pandas load.
        Row-level scans (``drop_ids``) and large results are never kept."""
        rate = self.rates.rate(self.currency, partner=self.folder.name) if self.rates is not None else 1.0
        sources = self.sources()
        register = erasure_register(self.policy.register_url)
        key = self._results_key(sources, scans, register, rate)
        if key is not None:
            _forget_stale(key)
            if key in _RESULTS:
                _RESULTS.move_to_end(key)
                return [frame.copy() for frame in _RESULTS[key]]
        results = run_scans(scans, sources, self.engine, self.policy, self.purpose, register, rate=rate)
        if key is None or any(s.drop_ids for s in scans):
            return results  # row-level scans are never kept: not even measured (a full pass over 100 M rows' text)
        size = sum(int(r.memory_usage(deep=True).sum()) for r in results)
        if size <= _RESULTS_BYTES // 4:
            _RESULTS[key], _SIZES[key] = [frame.copy() for frame in results], size
            while len(_RESULTS) > _RESULTS_SIZE or sum(_SIZES.values()) > _RESULTS_BYTES:
                _drop(next(iter(_RESULTS)))
        return results

    def _results_key(self, sources: dict[str, Source], scans: list[Scan], register: ErasureRegister,
                     rate: float) -> tuple[object, ...] | None:
        """What a scan's result depends on: the files (:func:`_files_key`) or the mapping, the policy and key
        ring, the purpose, the currency rate, the erasure register's state, the scans themselves and the engine that
        runs them (the engines must agree, and the Spark equality tests can only show it if Spark really runs).
        ``None`` (not kept) for a database, whose rows can change without a trace here."""
        if self.engine.db_url:
            return None
        data = self.mapping.fingerprint if self.mapping is not None else _files_key(sources)
        when = register.last_request_at()
        return (str(self.folder.resolve()), data, self.policy.fingerprint, self.policy.tokenization_ring().fingerprint,
                self.purpose, rate, register.count(), when.isoformat() if when else "",
                tuple((s.name, s.sql, s.tables, s.drop_ids, s.keep) for s in scans), self.engine)

    def columns(self) -> dict[str, list[str]]:
        """The canonical tables the partner holds and the canonical columns its protected tables keep (schema only:
        the sources' headers and a PII sample are read, no table whole)."""
        return run_schema(self.sources(), self.engine, self.policy)

    def check_types(self) -> None:
        """DataValidationError naming each table and column with a value that does not parse as its canonical type
        (one engine pass over every row; the values stay on the partner). Skipped where it cannot find anything new:
        a mapped folder's tables were validated when the mapping read them; a database's columns are typed by the
        database (and checking would copy every table once more); files that passed in this process and have not
        changed since (size and modification time) are not read again."""
        if self.mapping is not None or self.engine.db_url:
            return
        sources = self.sources()
        key = _files_key(sources)
        if key in _CHECKED:
            return
        run_type_check(sources, self.engine, self.policy)
        _CHECKED.add(key)
        if len(_CHECKED) > _CACHE_SIZE:
            _CHECKED.clear()

    def count_customers(self) -> int:
        """How many customers this purpose may use (consent and erasure applied): one ``COUNT(DISTINCT)`` in the
        engine, the number :attr:`PartnerData.num_customers` gives on :meth:`tables`."""
        result = self.scan(CUSTOMER_COUNT)
        return int(result["customers"].iloc[0])

    @property
    def timezone(self) -> str:
        """The partner's own time zone (its mapping's; UTC when it declares none), as ``tables().meta`` holds it."""
        return self.mapping.timezone if self.mapping is not None else "UTC"

    def identities(self, tokens: pd.Series) -> pd.Series:
        """The partner's own customer ids for tokens of its customers: only ever on the partner, for its own
        exports (scores, target lists). Unknown tokens become missing values."""
        if self.mapping is not None:  # the mapping's transforms are pandas code: read through them (cached)
            raw = PartnerData(self.folder.name, **_mapped_tables(self.folder, self.mapping))  # type: ignore[arg-type]
            ids = customer_ids(raw).astype("string")
        else:  # the ids alone, read by the engine
            ids = run_raw_ids(self.sources(), self.engine, self.policy)
        mapping = dict(zip(Tokenizer(self.policy.tokenization_ring()).tokenize(ids), ids, strict=True))
        return pd.Series(tokens).astype("string").map(mapping)

    def raw_columns(self) -> RawColumns:
        """The partner's raw tables as its own files name them: headers, the PII sample's findings and the sample's
        ids (:func:`~.engine.relations.raw_columns`). On the partner only, to choose its own export's contact
        column; no table is read whole."""
        return run_raw_columns(self.sources(), self.engine, self.policy)

    def latest_values(self, table: str, column: str) -> pd.DataFrame:
        """Per customer token, the latest non-empty value of one of the partner's raw columns (``customer_id``,
        ``own_value``; :func:`~.engine.relations.latest_values`). The one read of a column the protection policy
        keeps from every task: only for the partner's own file (a target list's contacts), never sent anywhere."""
        return run_latest_values(self.sources(), self.engine, self.policy, table, column)

    @property
    def vault(self) -> PartnerVault:
        """Encrypted storage for anything derived from these customers (checkpoints, embeddings, scores)."""
        return PartnerVault(self.policy)

    @property
    def state_dir(self) -> Path:
        """The partner's own state folder (keys, erasure register, ledger, encrypted artifacts)."""
        return self.policy.state_dir


def simulated_folder(data_root: str | Path, partition_id: int) -> Path:
    """The folder of the simulated partner with ``partition_id``: the k-th partner folder under ``data_root``."""
    folders = partner_folders(Path(data_root))
    if not 0 <= partition_id < len(folders):
        raise ConfigError(f"simulated partner {partition_id} has no folder: {data_root} holds {len(folders)} "
                          "partner folders")
    return folders[partition_id]
