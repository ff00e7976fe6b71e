"""Per-partner results of a simulated job: each partner's served model, its federated model alone and its own
alone-model, exactly, on that partner's test customers.

Simulation only. The driver plays every partner, so after the job it opens each partner's vault (the customer
state the partner sealed at the end of the job: its personalised table, customer embeddings, the blend it chose
on its validation customers and its alone-model) and evaluates those models on the partner's test items with
the same protocol as the baselines. A deployed partner releases none of this: under DP only the noised metrics
of the shared model travel (:func:`.server.noised_metrics`). The numbers answer issue 18's question: does
joining ever make a partner worse off than training alone?
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedinsight.data.schema import PartnerData
from fedinsight.federation.task import Vault
from fedinsight.models.alone import stored_alone
from fedinsight.models.blend import blend
from fedinsight.models.ranking import Catalogue, RankingTotals, evaluate_ranking, leave_latest_out, popularity_scores
from fedinsight.models.recommender import ItemParams
from fedinsight.tasks.recommend.state import customer_state_name, load_customer_state

MODELS = ("served", "federated_personal", "partner_alone", "partner_popularity")


def per_partner(views: dict[str, PartnerData], vaults: dict[str, Vault], job_id: str, items: ItemParams,
                catalogue: Catalogue, *, seed: int, explore: float, k: int = 10) -> dict[str, Any]:
    """``{"partners": {name: {model: metrics}}, "totals": {model: metrics}}`` for :data:`MODELS`."""
    n = catalogue.num_items
    rows: dict[str, Any] = {}
    totals = {m: RankingTotals.empty(n, catalogue.has_attribute) for m in MODELS}
    for name, data in views.items():
        vault = vaults.get(name)
        state_name = customer_state_name(job_id)
        if data.interactions is None or vault is None or not vault.exists(state_name):
            rows[name] = {"note": "no customer state from this job (the partner did not finish it)"}
            continue
        split = leave_latest_out(data.interactions, catalogue)  # type: ignore[arg-type]
        state = load_customer_state(vault, state_name)
        if state.customer_ids != split.customer_ids:
            rows[name] = {"note": "the partner's customers changed since the job"}
            continue
        table = ItemParams.from_matrix(state.personal_items) if state.personal_items is not None else items
        emb = state.embeddings

        def federated(r: np.ndarray, table: ItemParams = table, emb: np.ndarray = emb) -> np.ndarray:
            return emb[r] @ table.embeddings.T + table.bias[None, :]

        alone = stored_alone(state.blend, state.alone_items, state.alone_embeddings, split, n)
        weight = float(state.blend.get("weight", 1.0))  # type: ignore[arg-type]
        pop = popularity_scores(split, n)
        scorers: dict[str, Any] = {"federated_personal": federated,
                                   "partner_popularity": lambda r, pop=pop: np.broadcast_to(pop, (len(r), n))}
        if alone is not None:
            alone_scorer = alone.scorer(split, n)
            scorers["partner_alone"] = alone_scorer
            scorers["served"] = (lambda r, f=federated, a=alone_scorer, w=weight: blend(f(r), a(r), w))
        else:
            scorers["served"] = federated
        row: dict[str, Any] = {"customers": split.num_customers, "blend_weight": weight,
                               "alone_model": state.blend.get("alone"), "note": state.blend.get("note", "")}
        for model, scorer in scorers.items():
            result = evaluate_ranking(split, catalogue, scorer, table.bias, seed=seed, k=k, share=explore)
            totals[model] = totals[model] + result
            metrics = result.metrics(k, explore)
            row[model] = {f"hr@{k}": metrics[f"hr@{k}"], f"ndcg@{k}": metrics[f"ndcg@{k}"]}
        rows[name] = row
    summary = {m: {key: value for key, value in t.metrics(k, explore).items() if key != "explore"}
               for m, t in totals.items() if t.customers}
    return {"partners": rows, "totals": summary}
