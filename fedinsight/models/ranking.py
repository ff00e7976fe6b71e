"""The ranking evaluation protocol, the popularity baseline and exploration re-ranking.

Protocol (the one DESIGN.md's reference results use, but for ties: see :func:`tie_key`): every customer's *latest*
interaction is held out as the test item; the model ranks it against 99 items the customer never interacted with, drawn
at random; HR@10 is the share of customers whose test item lands in the top 10, NDCG@10 rewards a
higher position (1 / log2(rank + 2)). Beyond accuracy we measure the full-catalogue top-10 lists a
customer would actually be served (seen items excluded): catalogue coverage (share of the catalogue
recommended to anyone) and intra-list diversity (mean pairwise distance of the items' genres, or
categories, within a list; unavailable for a catalogue with neither).

Why everything here is a pure function of (customer id, seen items, seed): the federated model is
evaluated on each partner and the centralized baselines in the coordinator's process. Both must see
the *same* split and the *same* 99 negatives per customer, without any customer list crossing a
partner boundary — so each customer's negatives are drawn from a generator seeded by a hash of the
customer id and the run seed, and any party holding that customer's rows draws the same ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, DataValidationError, Problem

NUM_NEGATIVES = 99
TOP_K = 10


# --- the catalogue -------------------------------------------------------------------------------

ATTRIBUTE_COLUMNS: tuple[str, ...] = ("genres", "category")
"""The item attributes diversity and exploration can use, in order of preference: the first column of the
items table that has any value. ``genres`` is a '|'-separated list per item, ``category`` one value."""

NO_ATTRIBUTE = "the catalogue has neither a genres nor a category column"


@dataclass(frozen=True)
class Catalogue:
    """The public item catalogue: item ids in a fixed order (the row order of item parameters) and the one
    item attribute it has (genres, else category, else none) as a flag matrix.

    Why one attribute and not none-or-genres: partners' catalogues differ. A film catalogue has genres, a shop
    has categories, some have neither; diversity and exploration use whatever is there and say which, and a
    catalogue without any reports diversity as unavailable instead of failing.
    """

    item_ids: tuple[str, ...]
    attributes: np.ndarray  # bool (num_items, num_values); zero columns when the catalogue has no attribute
    attribute_values: tuple[str, ...] = ()
    attribute: str | None = None  # "genres", "category" or None

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def has_attribute(self) -> bool:
        return self.attribute is not None and self.attributes.shape[1] > 0

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    def fingerprint(self) -> str:
        """SHA-256 of the ordered item ids: partners refuse an update for a different catalogue."""
        return hashlib.sha256("\n".join(self.item_ids).encode()).hexdigest()

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> Catalogue:
        """Sorted unique item ids of an ``items`` table, with its first non-empty attribute column
        (:data:`ATTRIBUTE_COLUMNS`): '|'-separated ``genres``, else ``category``, else none."""
        if items is None or "item_id" not in items.columns or len(items) == 0:
            raise DataValidationError(Problem("items", "the item catalogue is empty or has no item_id column"))
        frame = items.drop_duplicates("item_id").sort_values("item_id", kind="stable")
        ids = tuple(str(i) for i in frame["item_id"])
        for column in ATTRIBUTE_COLUMNS:
            if column in frame.columns:
                values = frame[column].tolist()
                if any(_values_of(v, column) for v in values):
                    return cls.from_ids(ids, values, attribute=column)
        return cls.from_ids(ids)

    @classmethod
    def from_ids(cls, item_ids: Sequence[str], values: Sequence[object] | None = None,
                 attribute: str | None = "genres") -> Catalogue:
        """A catalogue from ordered ids and, optionally, one attribute string per item ('|'-separated for
        genres; a category is one value even if it contains '|')."""
        ids = tuple(str(i) for i in item_ids)
        if len(set(ids)) != len(ids):
            raise ConfigError("catalogue item ids must be unique")
        if values is None or attribute is None:
            return cls(ids, np.zeros((len(ids), 0), dtype=bool), (), None)
        lists = [_values_of(v, attribute) for v in values]
        if len(lists) != len(ids):
            raise ConfigError(f"catalogue {attribute} must have one entry per item")
        names = tuple(sorted({g for gs in lists for g in gs}))
        if not names:
            return cls(ids, np.zeros((len(ids), 0), dtype=bool), (), None)
        pos = {g: j for j, g in enumerate(names)}
        matrix = np.zeros((len(ids), len(names)), dtype=bool)
        for i, gs in enumerate(lists):
            matrix[i, [pos[g] for g in gs]] = True
        return cls(ids, matrix, names, attribute)

    def attribute_strings(self) -> list[str]:
        """The attribute back as '|'-separated strings (how the catalogue travels in a Flower ConfigRecord)."""
        return ["|".join(self.attribute_values[j] for j in np.flatnonzero(row)) for row in self.attributes]

    def diversity_text(self) -> str:
        """How intra-list diversity is measured on this catalogue, in words (summary.json, the report)."""
        if not self.has_attribute:
            return f"unavailable: {NO_ATTRIBUTE}"
        return f"mean pairwise Jaccard distance of the items' {self.attribute}"

    def exploration_text(self) -> str:
        """What the exploration share picks on this catalogue, in words."""
        base = "items below the median exposure (item bias)"
        if not self.has_attribute:
            return f"{base} only: popularity-based, because {NO_ATTRIBUTE}"
        return f"{base} or sharing no {self.attribute} value with the customer's two most frequent ones"


def _values_of(value: object, attribute: str) -> list[str]:
    """The attribute values of one item: genres split on '|', a category as one value; none if missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return []
    text = str(value).strip()
    if not text:
        return []
    if attribute == "genres":
        return [x.strip() for x in text.split("|") if x.strip()]
    return [text]


# --- the split -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class InteractionSplit:
    """Leave-latest-one-out split of one party's interactions, in catalogue indices.

    ``customer_ids[c]`` owns ``train_items[train_indptr[c]:train_indptr[c+1]]`` (unique, sorted) and
    the held-out ``test_items[c]``. Customers with a single interaction have no training data and are
    left out (counted in ``dropped_customers``).
    """

    customer_ids: tuple[str, ...]
    train_indptr: np.ndarray
    train_items: np.ndarray
    test_items: np.ndarray
    dropped_customers: int = 0
    dropped_rows: int = 0  # interactions with items outside the catalogue

    @property
    def num_customers(self) -> int:
        return len(self.customer_ids)

    def items_of(self, c: int) -> np.ndarray:
        return self.train_items[self.train_indptr[c]:self.train_indptr[c + 1]]

    def train_customer_index(self) -> np.ndarray:
        """The customer position of every training interaction (parallel to ``train_items``)."""
        return np.repeat(np.arange(self.num_customers), np.diff(self.train_indptr))

    def item_customer_counts(self, num_items: int) -> np.ndarray:
        """Number of customers who touched each item in training (for item-wise federated averaging)."""
        return np.bincount(self.train_items, minlength=num_items).astype(np.int64)


SPLIT_COLUMNS = ("customer_id", "item_id", "n", "recency")
"""The split's input, one row per (customer, item): how many interactions, and ``recency`` 1 for the customer's latest
item, 2 for the one before ... (:func:`ranked_pairs` in pandas; the engine's scan computes the same column)."""


def tie_key(days: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The order among a customer's items last touched at the same instant: the MD5 hex of ``"<day>/<item id>"``
    (``day`` = whole days since 1970 of that instant), larger is later.

    Why not the table's row order (the rule until the engine came): no engine can reproduce the order rows had in a
    partner's export (a directory of Parquet files, a database table, Spark's partitions have none), and a split
    that depends on how an export happened to be sorted is not the partner's data. Why not the item id: ties are
    common (MovieLens-100K customers rate many films in one second) and low item ids are popular films, so ordering
    by id moves the popularity baseline's HR@10 between 0.32 and 0.47. A hash of the item is neutral; the day makes
    the order differ between one customer's days. Both engines compute it in SQL as ``md5(CAST(day AS VARCHAR) ||
    '/' || item_id)``; it needs no customer id (tokens and raw ids differ between the pandas path and the engine)."""
    return np.asarray([hashlib.md5(f"{d}/{i}".encode()).hexdigest() for d, i in zip(days, items, strict=True)],
                      dtype=object)


def ranked_pairs(interactions: pd.DataFrame) -> pd.DataFrame:
    """Interactions as :data:`SPLIT_COLUMNS`: one row per (customer, item) with its latest time, ranked by recency
    within the customer (ties by :func:`tie_key`). Rows without a time cannot be ordered and are left out."""
    missing = {"customer_id", "item_id", "timestamp"} - set(interactions.columns)
    if missing:
        raise DataValidationError(Problem("interactions", f"missing column(s) {', '.join(sorted(missing))}"))
    frame = pd.DataFrame({
        "customer_id": interactions["customer_id"].astype(str).to_numpy(),
        "item_id": interactions["item_id"].astype(str).to_numpy(),
        "timestamp": pd.to_datetime(interactions["timestamp"]).to_numpy(),
    }).dropna(subset=["timestamp"])
    pairs = frame.groupby(["customer_id", "item_id"], sort=False).agg(
        last=("timestamp", "max"), n=("timestamp", "size")).reset_index()
    tied = pairs.duplicated(["customer_id", "last"], keep=False).to_numpy()
    key = np.full(len(pairs), "", dtype=object)
    if tied.any():
        days = pairs["last"].to_numpy()[tied].astype("datetime64[D]").astype(np.int64)
        key[tied] = tie_key(days, pairs["item_id"].to_numpy()[tied])
    pairs["key"] = key
    pairs = pairs.sort_values(["customer_id", "last", "key"], ascending=[True, False, False], kind="stable")
    pairs["recency"] = pairs.groupby("customer_id", sort=False).cumcount().to_numpy() + 1
    return pairs.loc[:, list(SPLIT_COLUMNS)].reset_index(drop=True)


def split_ranked(pairs: pd.DataFrame, catalogue: Catalogue, *, skip_latest: int = 0) -> InteractionSplit:
    """The split from :data:`SPLIT_COLUMNS` (:func:`ranked_pairs`): :func:`split_coded` on the pairs' customers
    numbered in sorted order and their items in catalogue indices."""
    ids, codes = np.unique(pairs["customer_id"].astype(str).to_numpy(dtype=object), return_inverse=True)
    items = pairs["item_id"].astype(str).map(catalogue.index()).fillna(-1).to_numpy(dtype=np.int64)
    return split_coded(codes, ids, items, pairs["n"].to_numpy(dtype=np.int64),
                       pairs["recency"].to_numpy(dtype=np.int64), skip_latest=skip_latest)


def split_coded(codes: np.ndarray, ids: np.ndarray, items: np.ndarray, rows: np.ndarray, recency: np.ndarray, *,
                skip_latest: int = 0) -> InteractionSplit:
    """The leave-latest-one-out split from one entry per (customer, item): ``codes`` the customer's position in
    ``ids`` (sorted), ``items`` the catalogue index (-1: outside the catalogue; its ``rows`` interactions are
    counted as dropped), ``recency`` 1 for the customer's latest item, 2 for the one before ... Each customer's
    ``skip_latest`` latest catalogue items are set aside, the next one is the test item and the rest, sorted, the
    training items; a customer left with fewer than two items is dropped (counted). Plain integer arrays, so the
    engine can hand over millions of pairs without a Python string per pair (:mod:`fedinsight.tasks.recommend.
    interaction_scan`)."""
    codes, items = np.asarray(codes, dtype=np.int64), np.asarray(items, dtype=np.int64)
    known = items >= 0
    dropped_rows = int(np.asarray(rows, dtype=np.int64)[~known].sum())
    order = np.lexsort((np.asarray(recency, dtype=np.int64)[known], codes[known]))
    owner, item = codes[known][order], items[known][order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.empty(0, dtype=np.int64)
    place = np.arange(len(owner)) - np.repeat(starts, np.diff(np.r_[starts, len(owner)])) - skip_latest
    owner, item, place = owner[place >= 0], item[place >= 0], place[place >= 0]
    counts = np.bincount(owner, minlength=len(ids))
    enough = counts >= 2
    dropped_customers = int(((counts > 0) & ~enough).sum())
    position = np.cumsum(enough) - 1  # a kept customer's row in the split
    take = enough[owner]
    owner, item, place = position[owner[take]], item[take], place[take]
    test = np.empty(int(enough.sum()), dtype=np.int64)
    test[owner[place == 0]] = item[place == 0]
    train = place > 0
    by = np.lexsort((item[train], owner[train]))
    sizes = np.bincount(owner[train], minlength=len(test))
    return InteractionSplit(
        customer_ids=tuple(str(c) for c in np.asarray(ids, dtype=object)[enough]),
        train_indptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        train_items=item[train][by].astype(np.int64),
        test_items=test,
        dropped_customers=dropped_customers,
        dropped_rows=dropped_rows,
    )


def leave_latest_out(interactions: pd.DataFrame, catalogue: Catalogue, *, skip_latest: int = 0) -> InteractionSplit:
    """Split: each customer's latest interaction is the test item, the rest is training data.

    ``skip_latest`` drops each customer's latest distinct interactions first: with 1, the test items are
    set aside and the next-latest becomes the held-out item -- the *validation* split a partner chooses its
    served model on (:mod:`fedinsight.models.blend`), never touching the test customers' test items.

    Repeated (customer, item) pairs count once, at their latest time, so a test item is never also a training
    item. Items last touched at the same instant are ordered by :func:`tie_key`, never by row order, so a partner,
    the pooled baseline and the partner's engine (which computes the same ranking in SQL) see the same split
    whatever order the rows come in.
    """
    return split_ranked(ranked_pairs(interactions), catalogue, skip_latest=skip_latest)


def customer_seed(customer_id: str, seed: int) -> list[int]:
    """A generator seed that depends only on the customer id and the run seed (stable across processes)."""
    digest = hashlib.sha256(str(customer_id).encode()).digest()
    return [int(seed) & 0xFFFFFFFF, int.from_bytes(digest[:8], "little")]


def sample_negatives(customer_id: str, seen: np.ndarray, num_items: int, seed: int,
                     n: int = NUM_NEGATIVES) -> np.ndarray:
    """``n`` distinct items the customer never interacted with, the same wherever it is computed."""
    allowed = np.ones(num_items, dtype=bool)
    allowed[np.asarray(seen, dtype=np.int64)] = False
    pool = np.flatnonzero(allowed)
    if len(pool) < n:
        raise ConfigError(
            f"customer {customer_id} has interacted with all but {len(pool)} of {num_items} items; "
            f"the protocol needs {n} unseen items (use a larger catalogue)"
        )
    rng = np.random.default_rng(customer_seed(customer_id, seed))
    return np.sort(rng.choice(pool, size=n, replace=False))


def evaluation_candidates(split: InteractionSplit, num_items: int, seed: int,
                          n: int = NUM_NEGATIVES) -> np.ndarray:
    """(customers, 1 + n) item indices: column 0 is the test item, then its ``n`` sampled negatives."""
    out = np.empty((split.num_customers, 1 + n), dtype=np.int64)
    for c, cid in enumerate(split.customer_ids):
        seen = np.append(split.items_of(c), split.test_items[c])
        out[c, 0] = split.test_items[c]
        out[c, 1:] = sample_negatives(cid, seen, num_items, seed, n)
    return out


# --- accuracy ------------------------------------------------------------------------------------

def hit_and_ndcg(candidate_scores: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Per customer HR@k and NDCG@k when column 0 of ``candidate_scores`` is the test item.

    Ties are broken uniformly at random *in expectation* (exactly, not by drawing): a model that
    scores everything equal gets HR@10 = 10/100, not 0 or 1.
    """
    scores = np.asarray(candidate_scores, dtype=np.float64)
    test = scores[:, :1]
    greater = (scores[:, 1:] > test).sum(axis=1)
    ties = (scores[:, 1:] == test).sum(axis=1)
    hr = np.zeros(len(scores))
    ndcg = np.zeros(len(scores))
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    for r in range(k):  # the test item is at position r with probability 1/(ties+1) for r in [g, g+ties]
        at_r = (greater <= r) & (r <= greater + ties)
        hr += at_r / (ties + 1)
        ndcg += at_r * discounts[r] / (ties + 1)
    return hr, ndcg


def hit_and_ndcg_of_lists(lists: np.ndarray, test_items: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """HR@k, NDCG@k of explicit ranked lists (rows) against one test item per row."""
    top = np.asarray(lists)[:, :k]
    where = top == np.asarray(test_items)[:, None]
    hit = where.any(axis=1).astype(float)
    pos = np.argmax(where, axis=1)
    return hit, np.where(hit > 0, 1.0 / np.log2(pos + 2.0), 0.0)


# --- beyond accuracy -----------------------------------------------------------------------------

def top_k_lists(scores: np.ndarray, exclude: list[np.ndarray] | None, k: int = TOP_K) -> np.ndarray:
    """Row-wise top-k item indices of a (customers, items) score matrix, ``exclude[c]`` removed."""
    s = np.array(scores, dtype=np.float64, copy=True)
    if exclude is not None:
        for c, items in enumerate(exclude):
            s[c, items] = -np.inf
    part = np.argpartition(-s, kth=min(k, s.shape[1] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def coverage(lists: np.ndarray, num_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    return float(len(np.unique(np.asarray(lists).ravel())) / num_items)


def attribute_distance(attributes: np.ndarray) -> np.ndarray:
    """Pairwise Jaccard distance of items' attribute sets (0 for two items with none at all)."""
    g = attributes.astype(np.float64)
    inter = g @ g.T
    sizes = g.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, 1.0 - inter / np.where(union > 0, union, 1.0), 0.0)


def intra_list_diversity(lists: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """Per list: mean pairwise Jaccard distance of its items' attribute sets (genres or a category).

    Why no fallback to embedding distance for a catalogue without attributes: it would differ from model to
    model (each has its own embeddings), so the numbers could not be compared; such a catalogue reports
    diversity as unavailable instead (:meth:`RankingTotals.metrics`).
    """
    lists = np.asarray(lists)
    k = lists.shape[1]
    if attributes.shape[1] == 0:
        raise ConfigError(f"intra-list diversity needs item attributes: {NO_ATTRIBUTE}")
    if k < 2:
        return np.zeros(len(lists))
    out = np.empty(len(lists))
    for c, row in enumerate(lists):
        d = attribute_distance(attributes[row])
        out[c] = d.sum() / (k * (k - 1))
    return out


# --- exploration share ---------------------------------------------------------------------------

def explore_slots(k: int, share: float) -> int:
    """How many of ``k`` slots the exploration share reserves (rounded, at least 1 for any share > 0)."""
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"--explore must be in [0, 1) (got {share})")
    return 0 if share == 0 else min(k - 1, max(1, round(share * k)))


def usual_values(attributes: np.ndarray, history: np.ndarray, top: int = 2) -> np.ndarray:
    """The customer's usual attribute values: the ``top`` most frequent genres (or categories) of the items
    they interacted with."""
    if attributes.shape[1] == 0 or len(history) == 0:
        return np.zeros(attributes.shape[1], dtype=bool)
    counts = attributes[history].sum(axis=0)
    taste = np.zeros(attributes.shape[1], dtype=bool)
    order = np.argsort(-counts, kind="stable")[:top]
    taste[order[counts[order] > 0]] = True
    return taste


def exploration_mask(attributes: np.ndarray, exposure: np.ndarray, history: np.ndarray,
                     *, tail_quantile: float = 0.5) -> np.ndarray:
    """Items outside the customer's usual taste: less exposed (below the median exposure) or sharing no
    genre (or category) with the customer's usual ones. ``exposure`` is any popularity measure (the model's
    item bias, or interaction counts). Without attributes only the first part applies: exploration is then
    popularity-based (:meth:`Catalogue.exploration_text`)."""
    tail = exposure < np.quantile(exposure, tail_quantile)
    taste = usual_values(attributes, history)
    if taste.any():
        return tail | ~(attributes[:, taste].any(axis=1))
    return tail


def rerank_with_exploration(scores: np.ndarray, candidates: np.ndarray, eligible: np.ndarray,
                            k: int = TOP_K, share: float = 0.2) -> np.ndarray:
    """One ranked list of ``k`` items from ``candidates`` (item indices, scores parallel to them).

    The first ``k - e`` slots are the best-scoring candidates; the last ``e = explore_slots(k, share)``
    go to the best-scoring candidates that are exploration-eligible (``eligible`` is a catalogue-wide
    mask) and not already listed. If too few are eligible the remaining slots fall back to score order,
    so a list is never short.
    """
    order = candidates[np.argsort(-scores, kind="stable")]
    e = explore_slots(k, share)
    head = order[: k - e]
    rest = order[k - e:]
    picks = rest[eligible[rest]][:e]
    if len(picks) < e:
        fill = rest[~np.isin(rest, picks)][: e - len(picks)]
        picks = np.concatenate([picks, fill])
    return np.concatenate([head, picks])[:k]


# --- the popularity baseline ---------------------------------------------------------------------

def popularity_scores(split: InteractionSplit, num_items: int) -> np.ndarray:
    """Item scores of the popularity baseline: number of customers with the item in their training data."""
    return split.item_customer_counts(num_items).astype(np.float64)


# --- one evaluation, additive across partners ----------------------------------------------------

@dataclass
class RankingTotals:
    """Sums of per-customer metrics and per-item recommendation counts.

    Additive, so each partner evaluates its own customers and the coordinator adds the totals:
    HR@k, NDCG@k and intra-list diversity become means, coverage is read off the summed counts.
    ``*_explore`` are the same numbers with the exploration share applied. ``diversity`` is False when the
    catalogue has no attribute to measure diversity by: the ILD sums are then zeros that mean nothing, and
    :meth:`metrics` reports diversity as unavailable (``None``).
    """

    customers: int
    hr: float
    ndcg: float
    ild: float
    hr_explore: float
    ndcg_explore: float
    ild_explore: float
    recommended: np.ndarray  # (num_items,) times each item appeared in a full-catalogue top-k list
    recommended_explore: np.ndarray
    diversity: bool = True

    SCALARS = ("customers", "hr", "ndcg", "ild", "hr_explore", "ndcg_explore", "ild_explore")

    @classmethod
    def empty(cls, num_items: int, diversity: bool = True) -> RankingTotals:
        zeros = np.zeros(num_items, dtype=np.int64)
        return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, zeros, zeros.copy(), diversity)

    def __add__(self, other: RankingTotals) -> RankingTotals:
        values = {name: getattr(self, name) + getattr(other, name) for name in self.SCALARS}
        return RankingTotals(**values, recommended=self.recommended + other.recommended,
                             recommended_explore=self.recommended_explore + other.recommended_explore,
                             diversity=self.diversity and other.diversity)

    def metrics(self, k: int = TOP_K, share: float = 0.2) -> dict[str, object]:
        """The summary.json block: HR@k, NDCG@k, coverage, ILD (``None``: unavailable), and the exploration
        share's cost and gain."""
        n = max(1, self.customers)
        num_items = len(self.recommended)
        base = {
            f"hr@{k}": self.hr / n,
            f"ndcg@{k}": self.ndcg / n,
            "coverage": float((self.recommended > 0).sum() / num_items),
            "ild": self.ild / n,
        }
        explore = {
            "share": share,
            f"hr@{k}": self.hr_explore / n,
            f"ndcg@{k}": self.ndcg_explore / n,
            "coverage": float((self.recommended_explore > 0).sum() / num_items),
            "ild": self.ild_explore / n,
        }
        explore["hr_cost"] = base[f"hr@{k}"] - explore[f"hr@{k}"]
        explore["ild_gain"] = explore["ild"] - base["ild"]
        explore["coverage_gain"] = explore["coverage"] - base["coverage"]
        if not self.diversity:
            base["ild"] = explore["ild"] = explore["ild_gain"] = None

        def rounded(values: dict[str, float | None]) -> dict[str, float | None]:
            return {key: None if v is None else round(float(v), 6) for key, v in values.items()}

        return {**rounded(base), "customers": self.customers, "explore": rounded(explore)}


def evaluate_ranking(
    split: InteractionSplit,
    catalogue: Catalogue,
    score_rows,  # Callable[[np.ndarray], np.ndarray]: customer positions -> (len, num_items) scores
    exposure: np.ndarray,
    *,
    seed: int,
    k: int = TOP_K,
    share: float = 0.2,
    chunk: int = 512,
) -> RankingTotals:
    """Evaluate one scorer on one party's split with the module's protocol (see the module docstring).

    ``exposure`` ranks items by how exposed they already are (used to pick exploration items); diversity is
    measured on the catalogue's attribute (genres or category), and reported unavailable without one.
    """
    num_items = catalogue.num_items
    features = catalogue.attributes
    diversity = catalogue.has_attribute
    candidates = evaluation_candidates(split, num_items, seed)
    totals = RankingTotals.empty(num_items, diversity)
    e = explore_slots(k, share)
    for start in range(0, split.num_customers, chunk):
        rows = np.arange(start, min(start + chunk, split.num_customers))
        scores = np.asarray(score_rows(rows), dtype=np.float64)
        cand = candidates[rows]
        cand_scores = np.take_along_axis(scores, cand, axis=1)
        hr, ndcg = hit_and_ndcg(cand_scores, k)
        seen = [split.items_of(c) for c in rows]
        lists = top_k_lists(scores, seen, k)
        explore_lists = lists.copy()
        sampled = np.empty((len(rows), k), dtype=np.int64)
        for r, c in enumerate(rows):
            eligible = exploration_mask(catalogue.attributes, exposure, seen[r])
            if e:
                # ties among the candidates are broken by a per-customer random order, not by position
                rng = np.random.default_rng(customer_seed(split.customer_ids[c], seed + 1))
                shuffle = rng.permutation(cand.shape[1])
                sampled[r] = rerank_with_exploration(cand_scores[r, shuffle], cand[r, shuffle], eligible, k, share)
                unseen = np.ones(num_items, dtype=bool)
                unseen[seen[r]] = False
                pool = np.flatnonzero(unseen)
                explore_lists[r] = rerank_with_exploration(scores[r, pool], pool, eligible, k, share)
        hr_x, ndcg_x = hit_and_ndcg_of_lists(sampled, cand[:, 0], k) if e else (hr, ndcg)
        totals = totals + RankingTotals(
            customers=len(rows),
            hr=float(hr.sum()), ndcg=float(ndcg.sum()),
            ild=float(intra_list_diversity(lists, features).sum()) if diversity else 0.0,
            hr_explore=float(hr_x.sum()), ndcg_explore=float(ndcg_x.sum()),
            ild_explore=float(intra_list_diversity(explore_lists, features).sum()) if diversity else 0.0,
            recommended=np.bincount(lists.ravel(), minlength=num_items),
            recommended_explore=np.bincount(explore_lists.ravel(), minlength=num_items),
            diversity=diversity,
        )
    return totals
