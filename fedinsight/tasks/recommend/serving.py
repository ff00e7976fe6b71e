"""Serving on the partner: recommendations for one customer or for every servable customer at once.

Runs only on the partner's own machine, from the public item model the coordinator wrote and the customer
state the partner kept in its vault; it sends nothing. Who is servable comes from the partner's data view for
the ``recommendation`` purpose: customers who refused recommendations and erased customers are never served
(and are absent from batch output), whatever the stored state still holds.

Two sources of a list, said in every row:

* ``personal`` -- the customer has an embedding from training: score = p_u . q_i + b_i over the catalogue,
  seen items excluded, the exploration share's last slots for items outside the usual taste;
* ``popular-in-segment`` -- the customer has fewer than two interactions (or arrived after training): the
  partner's own most popular items in the customer's segment, computed here from its own view
  (:mod:`.segments`), seen items excluded, no exploration slots.

The batch path scores a block of customers with one matrix product and ranks it with
:mod:`fedinsight.models.topk`; one customer is a block of one, so both paths give the same list.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError, UnknownCustomerError
from fedinsight.core.files import atomic_output_file
from fedinsight.federation.task import Partner
from fedinsight.models.alone import stored_alone
from fedinsight.models.blend import blend
from fedinsight.models.ranking import Catalogue, InteractionSplit, explore_slots
from fedinsight.models.topk import exploration_masks, rank_batch
from fedinsight.tasks.recommend import segments
from fedinsight.tasks.recommend.state import CustomerState, customer_state_name, load_customer_state

PERSONAL = "personal"
POPULAR = "popular-in-segment"
BATCH = 2048  # customers per matrix product: (2048 x items) float32 scores stay ~40 MB at 5,000 items
OUTPUT_SUFFIXES = (".parquet", ".csv")

Progress = Callable[[int, int], None]
AloneScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (state rows, servable positions) -> scores


@dataclass(frozen=True)
class Recommendation:
    """One recommended item for one customer."""

    rank: int
    item_id: str
    score: float  # personal: the model's score; popular-in-segment: share of the segment's customers
    exploration: bool  # filled by the exploration share (outside the customer's usual taste)
    title: str | None = None
    attributes: str = ""  # the item's genres or category ('|'-separated), "" without
    source: str = PERSONAL  # personal | popular-in-segment
    segment: str = ""  # popular-in-segment: which segment's popularity ("region=west", "all customers")


@dataclass(frozen=True)
class ItemModel:
    """The item model a coordinator wrote (``<out>/model``): public, the same for every partner."""

    job_id: str
    catalogue: Catalogue
    attribute_text: tuple[str, ...]  # each item's genres or category as written ('|'-separated)
    embeddings: np.ndarray  # (items, dim) float32
    bias: np.ndarray  # (items,) float32
    meta: dict[str, object]

    @classmethod
    def load(cls, folder: str | Path) -> ItemModel:
        folder = Path(folder)
        if not (folder / "items.npz").is_file() or not (folder / "model.json").is_file():
            if (folder / "model" / "items.npz").is_file():  # accept the run's output folder too
                folder = folder / "model"
            else:
                raise ConfigError(f"{folder} is not a recommender model folder (expected items.npz and model.json)")
        meta = json.loads((folder / "model.json").read_text())
        with np.load(folder / "items.npz", allow_pickle=False) as data:
            ids = [str(i) for i in data["item_ids"]]
            key = "attributes" if "attributes" in data.files else "genres"  # models written before categories
            values = [str(g) for g in data[key]]
            embeddings = np.array(data["embeddings"], dtype=np.float32)
            bias = np.array(data["bias"], dtype=np.float32)
        attribute = meta.get("attribute", "genres" if key == "genres" else None)
        catalogue = Catalogue.from_ids(ids, values, attribute=attribute)  # type: ignore[arg-type]
        text = tuple(values) if catalogue.has_attribute else ("",) * len(ids)
        return cls(str(meta["job_id"]), catalogue, text, embeddings, bias, meta)


class PartnerServer:
    """Everything serving needs on one partner, loaded once: the item model, the partner's customer state,
    its servable customers (tokens) with their histories, and its segment popularity.

    ``explore`` (default: the job's share) reserves that share of a personal list's slots for exploration;
    ``segment`` names the customers column for cold-start segments (default: :data:`segments.AUTO_COLUMNS`).
    """

    def __init__(self, model_dir: str | Path, partner: Partner, *, explore: float | None = None,
                 segment: str | None = None, min_segment: int = segments.MIN_SEGMENT_CUSTOMERS) -> None:
        self.model = ItemModel.load(model_dir)
        self.partner = partner
        share = self.model.meta.get("explore", 0.2) if explore is None else explore
        self.share = float(share)  # type: ignore[arg-type]
        explore_slots(10, self.share)  # refuses a share outside [0, 1) with the flag's name
        if min_segment < 1:
            raise ConfigError(f"--min-segment must be at least 1 (got {min_segment})")
        catalogue = self.model.catalogue
        state = load_customer_state(partner.vault, customer_state_name(self.model.job_id))
        if state.embeddings.shape[1] != self.model.embeddings.shape[1]:
            raise ConfigError(f"the customer state of job '{self.model.job_id}' does not match this model's dimension")
        self.embeddings = state.embeddings
        items = self.model.embeddings, self.model.bias
        if state.personal_items is not None:  # the partner's own fine-tuned table (never sent)
            items = state.personal_items[:, :-1], state.personal_items[:, -1]
        self.item_emb = np.ascontiguousarray(items[0], dtype=np.float32)
        self.item_bias = np.ascontiguousarray(items[1], dtype=np.float32)
        data = partner.data()
        self.tokens = self._servable(data)
        position = pd.Index(self.tokens)
        self.state_row = pd.Index(state.customer_ids).get_indexer(self.tokens)  # -1: no embedding
        self.indptr, self.seen = self._histories(data.interactions, position, catalogue)  # type: ignore[arg-type]
        column = segments.choose_column(data.customers, segment)  # type: ignore[arg-type]
        labels = None
        if column is not None:
            frame = data.customers.set_index("customer_id")[column]  # type: ignore[union-attr]
            labels = segments.segment_labels(frame.reindex(self.tokens), column)
        self.popularity = segments.popularity(labels, column, self.indptr, self.seen, catalogue.num_items,
                                              min_segment)
        self.item_ids = np.asarray(catalogue.item_ids, dtype=object)
        self.attribute_text = np.asarray(self.model.attribute_text, dtype=object)
        self.titles = self._titles(data.items, catalogue)  # type: ignore[arg-type]
        self._own: np.ndarray | None = None
        self.blend_weight, self._alone = self._alone_model(state, catalogue.num_items)

    def _alone_model(self, state: CustomerState, num_items: int) -> tuple[float, AloneScorer | None]:
        """The blend the partner chose at the end of the job (:mod:`.blending`): its weight and the alone-model's
        scorer of (state rows, servable positions). An item-item model is refitted here, in closed form from its
        lambda, on the servable customers' histories (consent and erasures applied)."""
        weight = float(state.blend.get("weight", 1.0))  # type: ignore[arg-type]
        if weight >= 1.0:
            return 1.0, None
        histories = InteractionSplit(tuple(str(t) for t in self.tokens), self.indptr, self.seen,
                                     np.zeros(len(self.tokens), dtype=np.int64))
        model = stored_alone(state.blend, state.alone_items, state.alone_embeddings, histories, num_items)
        if model is None:
            return 1.0, None
        score = model.scorer(histories, num_items)
        if model.kind == "mf":  # its customer table is indexed like the state's rows
            return weight, lambda rows, _who: score(rows)
        return weight, lambda _rows, who: score(who)  # item-item: the servable customers' histories

    # --- loading -------------------------------------------------------------------------------------

    @staticmethod
    def _servable(data) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Tokens of the customers the view gives for recommendation (consenting, not erased), sorted."""
        if data.customers is not None:
            ids = data.customers["customer_id"]
        elif data.interactions is not None:
            ids = data.interactions["customer_id"]
        else:
            raise ConfigError("this partner has neither a customers nor an interactions table: nobody to serve")
        return np.sort(pd.unique(ids.astype(str).to_numpy()))

    @staticmethod
    def _histories(interactions: pd.DataFrame | None, position: pd.Index,
                   catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
        """Every servable customer's distinct catalogue items as CSR (seen items are never recommended)."""
        if interactions is None or len(interactions) == 0:
            return np.zeros(len(position) + 1, dtype=np.int64), np.empty(0, dtype=np.int64)
        owner = position.get_indexer(interactions["customer_id"].astype(str))
        item = pd.Index(catalogue.item_ids).get_indexer(interactions["item_id"].astype(str))
        keep = (owner >= 0) & (item >= 0)
        keys = np.unique(owner[keep].astype(np.int64) * catalogue.num_items + item[keep])
        owners, items = np.divmod(keys, catalogue.num_items)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=len(position)))]).astype(np.int64)
        return indptr, items.astype(np.int64)

    @staticmethod
    def _titles(items: pd.DataFrame | None, catalogue: Catalogue) -> np.ndarray | None:
        """The partner's own item titles (its items table), aligned with the catalogue; None without."""
        if items is None or "title" not in items.columns:
            return None
        titles = items.drop_duplicates("item_id")
        titles = pd.Series(titles["title"].to_numpy(), index=titles["item_id"].astype(str))
        return titles.reindex(list(catalogue.item_ids)).astype(object).to_numpy()

    # --- serving -------------------------------------------------------------------------------------

    def position(self, customer_id: str) -> int:
        """The servable position of one of the partner's own customer ids, or UnknownCustomerError."""
        token = self.partner.token(str(customer_id))
        at = int(np.searchsorted(self.tokens, token))
        if at >= len(self.tokens) or self.tokens[at] != token:
            raise UnknownCustomerError(
                f"customer '{customer_id}' cannot be served by this partner: it is not among this partner's "
                "customers who consent to recommendations (or it was erased); check the id as it appears in "
                "the partner's own data")
        return at

    def rank(self, positions: np.ndarray, k: int) -> dict[str, np.ndarray]:
        """Lists for servable positions, as parallel (customers, k) arrays plus per-customer source/segment."""
        if k < 1:
            raise ConfigError(f"--k must be at least 1 (got {k})")
        if self.model.catalogue.num_items < k + 1:
            raise ConfigError(f"--k {k} is larger than the catalogue allows ({self.model.catalogue.num_items} items)")
        n = len(positions)
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), np.nan)
        exploring = np.zeros((n, k), dtype=bool)
        rows = self.state_row[positions]
        personal = rows >= 0
        for part, cold in ((np.flatnonzero(personal), False), (np.flatnonzero(~personal), True)):
            if len(part) == 0:
                continue
            who = positions[part]
            indptr, seen = self._slice(who)
            if cold:
                lists = rank_batch(self.popularity.ranking_scores(who), indptr, seen, k)
                values = self.popularity.shares(who, lists.items)
            else:
                matrix = self.embeddings[rows[part]] @ self.item_emb.T + self.item_bias
                if self._alone is not None:  # the partner's blend with its own alone-model (scores: z-scores)
                    matrix = blend(matrix, self._alone(rows[part], who), self.blend_weight)
                eligible = (exploration_masks(self.model.catalogue.attributes, self.item_bias, indptr, seen)
                            if self.share > 0 else None)
                lists = rank_batch(matrix, indptr, seen, k, self.share, eligible)
                values = lists.scores
            items[part], scores[part], exploring[part] = lists.items, values, lists.exploring
        labels = np.asarray(self.popularity.labels, dtype=object)[self.popularity.codes[positions]]
        return {"items": items, "scores": scores, "exploring": exploring, "personal": personal,
                "segment": np.where(personal, "", labels)}

    def _slice(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts, ends = self.indptr[positions], self.indptr[positions + 1]
        sizes = ends - starts
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], sizes)
        return indptr, self.seen[np.repeat(starts, sizes) + offsets]

    def recommend(self, customer_id: str, k: int = 10) -> list[Recommendation]:
        """Top-``k`` for one of the partner's own customer ids (see :func:`recommend_items`)."""
        ranked = self.rank(np.array([self.position(customer_id)]), k)
        source = PERSONAL if ranked["personal"][0] else POPULAR
        out = []
        for r, i in enumerate(ranked["items"][0]):
            if i < 0:
                break
            out.append(Recommendation(
                rank=r + 1, item_id=str(self.item_ids[i]), score=float(ranked["scores"][0, r]),
                exploration=bool(ranked["exploring"][0, r]),
                title=None if self.titles is None or pd.isna(self.titles[i]) else str(self.titles[i]),
                attributes=str(self.attribute_text[i]), source=source, segment=str(ranked["segment"][0])))
        return out

    def own_ids(self) -> np.ndarray:
        """The partner's own ids of its servable customers (resolved once, on the partner, through its view)."""
        if self._own is None:
            own = self.partner.identities(pd.Series(self.tokens))
            if own.isna().any():
                raise ConfigError(f"{int(own.isna().sum())} customer token(s) do not match this partner's own "
                                  "ids: was its tokenization key replaced since its data was read? Retry")
            self._own = own.astype(str).to_numpy()
        return self._own

    def recommend_all(self, k: int = 10, *, batch: int = BATCH, progress: Progress | None = None) -> pd.DataFrame:
        """Every servable customer's list, one row per (customer, rank), in the order of the partner's own ids.

        Columns: ``customer_id`` (the partner's own id, never a token), ``rank``, ``item_id``, ``score``,
        ``source`` (personal | popular-in-segment), ``exploration``, ``segment`` (cold start: which segment's
        popularity), and ``title`` when the partner's items table has titles.
        """
        own = self.own_ids()
        order = np.argsort(own, kind="stable")
        total = len(order)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, total, batch):
            positions = order[start:start + batch]
            ranked = self.rank(positions, k)
            valid = ranked["items"] >= 0
            per_slot = {"position": positions, "personal": ranked["personal"], "segment": ranked["segment"]}
            parts.append({**{key: np.repeat(v[:, None], k, axis=1)[valid] for key, v in per_slot.items()},
                          "rank": np.tile(np.arange(1, k + 1), (len(positions), 1))[valid],
                          "item": ranked["items"][valid], "score": ranked["scores"][valid],
                          "exploration": ranked["exploring"][valid]})
            if progress is not None:
                progress(min(start + batch, total), total)
        keys = ("position", "rank", "item", "score", "exploration", "personal", "segment")
        cols = {key: np.concatenate([p[key] for p in parts]) for key in keys} if parts else \
            {key: np.empty(0, dtype=np.int64 if key in ("position", "rank", "item") else object) for key in keys}
        item = cols["item"].astype(np.int64)
        frame = pd.DataFrame({
            "customer_id": pd.array(own[cols["position"].astype(np.int64)], dtype="string"),
            "rank": cols["rank"].astype(np.int16),
            "item_id": pd.array(self.item_ids[item], dtype="string"),
            "score": cols["score"].astype(np.float32),
            "source": pd.Categorical(np.where(cols["personal"].astype(bool), PERSONAL, POPULAR),
                                     categories=[PERSONAL, POPULAR]),
            "exploration": cols["exploration"].astype(bool),
            "segment": pd.array(cols["segment"].astype(str), dtype="string"),
        })
        if self.titles is not None:
            frame["title"] = pd.array(self.titles[item], dtype="string")
        return frame


def recommend_items(model_dir: str | Path, partner: Partner, customer_id: str, *, k: int = 10,
                    explore: float | None = None, segment: str | None = None) -> list[Recommendation]:
    """Top-``k`` items for one of this partner's customers, with scores; runs on the partner only.

    ``partner`` is the partner's own view (``fedinsight.partner.side.open_partner(folder, "recommendation")``).
    A customer with an embedding gets ``personal`` items; one with fewer than two interactions gets the
    partner's popular items in their segment (``source = "popular-in-segment"``). Raises
    :class:`UnknownCustomerError` for a customer this partner cannot serve -- unknown, without consent for
    recommendations, or erased.
    """
    return PartnerServer(model_dir, partner, explore=explore, segment=segment).recommend(customer_id, k)


def write_recommendations(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a batch's lists atomically (a half-written file never replaces an old one), mode 0600."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {out}: use a .parquet or .csv file name")
    with atomic_output_file(out) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return out
