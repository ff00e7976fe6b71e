"""Assigning customers to simulated partners.

Why our own partitioners: flwr-datasets' partitioners operate on Hugging Face ``datasets`` objects
(a large extra dependency tree) while our unit of partitioning is a *customer*, not a row: every
table of a customer must follow the customer into one partner. These functions map customer ids to
partner indices; :func:`split_partner_tables` then cuts every table accordingly.

All partitioners are seeded and deterministic, and every customer lands in exactly one partner.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import PartnerData

PARTITION_SCHEMES: tuple[str, ...] = ("iid", "dirichlet", "natural")


def _check(num_customers: int, num_partners: int) -> None:
    if num_partners < 1:
        raise ConfigError(f"--partners must be at least 1 (got {num_partners})")
    if num_customers < num_partners:
        raise ConfigError(
            f"cannot split {num_customers} customers into {num_partners} partners: need at least one each"
        )


def iid_partition(num_customers: int, num_partners: int, seed: int) -> np.ndarray:
    """Shuffle customers and deal them into near-equal partners. Returns a partner index per customer."""
    _check(num_customers, num_partners)
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_customers)
    assignment = np.empty(num_customers, dtype=np.int64)
    assignment[order] = np.arange(num_customers) % num_partners
    return assignment


def dirichlet_partition(
    labels: Sequence[object] | np.ndarray | None,
    num_partners: int,
    alpha: float,
    seed: int,
    *,
    min_partition_size: int = 1,
    max_tries: int = 100,
    num_customers: int | None = None,
) -> np.ndarray:
    """Label skew (and the size skew it induces) as in flwr-datasets' ``DirichletPartitioner``.

    For every label value, the customers holding it are split across partners in proportions drawn
    from Dirichlet(alpha). Small alpha = very different partners. With ``labels=None`` all customers
    share one label, which gives pure size skew. Draws are repeated (deterministically) until every
    partner has ``min_partition_size`` customers.
    """
    if alpha <= 0 or not np.isfinite(alpha):
        raise ConfigError(f"--alpha must be a positive number (got {alpha})")
    if labels is None:
        if num_customers is None:
            raise ConfigError("dirichlet_partition needs labels or num_customers")
        codes = np.zeros(num_customers, dtype=np.int64)
    else:
        codes = pd.factorize(pd.Series(list(labels) if not isinstance(labels, np.ndarray) else labels))[0]
    n = len(codes)
    _check(n, num_partners)
    if min_partition_size * num_partners > n:
        raise ConfigError(
            f"cannot give each of {num_partners} partners {min_partition_size} of {n} customers"
        )
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        assignment = np.empty(n, dtype=np.int64)
        for code in np.unique(codes):
            members = np.flatnonzero(codes == code)
            rng.shuffle(members)
            proportions = rng.dirichlet(np.full(num_partners, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
            for partner, chunk in enumerate(np.split(members, cuts)):
                assignment[chunk] = partner
        sizes = np.bincount(assignment, minlength=num_partners)
        if sizes.min() >= min_partition_size:
            return assignment
    raise ConfigError(
        f"Dirichlet(alpha={alpha}) left a partner with fewer than {min_partition_size} customers in "
        f"{max_tries} draws; raise --alpha or lower --partners"
    )


def natural_partition(keys: Sequence[object] | np.ndarray, num_partners: int) -> np.ndarray:
    """Partition by a natural key (e.g. zip-code region, customer-id range).

    Distinct key values are sorted and grouped into ``num_partners`` contiguous blocks of roughly
    equal customer counts, so one key value never straddles two partners.
    """
    series = pd.Series(np.asarray(keys, dtype=object)).astype(str)
    _check(len(series), num_partners)
    counts = series.value_counts().sort_index()
    if len(counts) < num_partners:
        raise ConfigError(
            f"the natural key has only {len(counts)} distinct values; cannot make {num_partners} partners"
        )
    cumulative = counts.cumsum().to_numpy()
    total = cumulative[-1]
    # Block of each key value: which of num_partners equal shares its cumulative midpoint falls in.
    midpoints = cumulative - counts.to_numpy() / 2
    blocks = np.minimum((midpoints / total * num_partners).astype(np.int64), num_partners - 1)
    # Guarantee every block is non-empty: fall back to one block per rank if some are empty.
    if len(np.unique(blocks)) < num_partners:
        blocks = np.minimum(np.arange(len(counts)) * num_partners // len(counts), num_partners - 1)
    mapping = dict(zip(counts.index, blocks, strict=True))
    return series.map(mapping).to_numpy(dtype=np.int64)


def zip_region(zip_codes: Sequence[object]) -> np.ndarray:
    """US zip-code region (first digit, 0-9); non-numeric codes (e.g. Canadian) form region 'X'."""
    s = pd.Series(np.asarray(zip_codes, dtype=object)).astype(str).str.strip()
    first = s.str[0]
    return np.where(first.str.isdigit(), first, "X")


def id_range_key(customer_ids: Sequence[object]) -> np.ndarray:
    """Sort key for contiguous customer-id ranges (numeric ids sort numerically)."""
    s = pd.Series(np.asarray(customer_ids, dtype=object)).astype(str)
    numeric = pd.to_numeric(s, errors="coerce")
    if numeric.notna().all():
        width = len(str(int(numeric.max())))
        return numeric.astype(np.int64).map(lambda v: str(v).zfill(width)).to_numpy()
    return s.to_numpy()


def split_partner_tables(
    tables: dict[str, pd.DataFrame],
    customer_ids: Sequence[str] | np.ndarray,
    assignment: np.ndarray,
    *,
    shared_tables: Sequence[str] = ("items",),
    prefix: str = "partner",
) -> dict[str, PartnerData]:
    """Cut every customer-keyed table by the customer -> partner assignment.

    Tables without ``customer_id`` listed in ``shared_tables`` (the public item catalogue) are
    copied to every partner.
    """
    ids = pd.Series(np.asarray(customer_ids, dtype=object)).astype(str)
    if len(ids) != len(assignment):
        raise ConfigError("assignment and customer ids differ in length")
    if ids.duplicated().any():
        raise ConfigError("customer ids to partition must be unique")
    owner = pd.Series(np.asarray(assignment), index=ids.to_numpy())
    num_partners = int(np.max(assignment)) + 1 if len(assignment) else 0
    partners = {f"{prefix}-{k}": PartnerData(partner_id=f"{prefix}-{k}") for k in range(num_partners)}
    for name, frame in tables.items():
        if frame is None:
            continue
        if name in shared_tables and "customer_id" not in frame.columns:
            for data in partners.values():
                setattr(data, name, frame)
            continue
        part_of_row = frame["customer_id"].astype(str).map(owner)
        if part_of_row.isna().any():
            missing = frame.loc[part_of_row.isna(), "customer_id"].astype(str).unique()[:5]
            raise ConfigError(f"table '{name}' has customers not in the partition: {', '.join(missing)}")
        codes = part_of_row.astype(np.int64).to_numpy()
        for k, (partner_id, data) in enumerate(partners.items()):
            setattr(data, name, frame.loc[codes == k].reset_index(drop=True))
            del partner_id
    return partners
