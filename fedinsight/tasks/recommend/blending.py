"""The partner's served model: the federated model blended with the partner's own alone-model (never sent).

One function, :func:`fit_served`, used by the partner at the end of a job (:func:`.client.evaluate`) and by the
simulation driver when it measures per-partner results (:mod:`.simulate`), so what is measured is what is served.
The choice is made on the partner's validation customers (:mod:`fedinsight.models.blend`); then the chosen
alone-model is refitted on all of the partner's training interactions, and served next to the federated model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fedinsight.models.alone import AloneModel, Scorer, candidates, refit_alone
from fedinsight.models.blend import (
    BlendChoice,
    Fold,
    blend,
    choose_folds,
    validation_candidates,
    validation_sample,
)
from fedinsight.models.ranking import InteractionSplit
from fedinsight.models.recommender import BPRConfig, ItemParams, LocalTrainer

VALIDATION_FIT_EPOCHS = 20
"""Customer-side epochs fitting fresh embeddings of the validation customers to the federated item table: their
job embeddings saw the validation items during training, so they are not reused (that would flatter the
federated side of the choice)."""
VALIDATION_FOLDS = 4
"""At most this many validation folds: each customer's next-latest training interaction held out, then the one before
it, and so on (:func:`validation_folds` says how many a partner pools)."""
ONE_FOLD_CUSTOMERS = 500
"""From this many validation customers one fold decides (HR@10's standard error is then below 0.025): at 1,000
customers a partner's blend choice costs minutes, and a second fold doubles it. Below it a partner pools folds until
about this many held-out interactions decide (:func:`validation_folds`)."""
MIN_VALIDATION_CUSTOMERS = 10
"""Below this many validation customers a partner does not blend (the choice would be noise): it serves the
federated model."""
MARGIN = 1.0
"""The blend replaces the partner's alone-model only when it wins on validation HR@10 by more than this many
standard errors of the paired per-customer difference (:func:`fedinsight.models.blend.choose_folds`); otherwise
w = 0 serves the alone-model exactly. Why on (issue 18): on partners of ~100-300 customers a blend's validation gain
is of the order of its standard error, so a smaller gain is more often luck than a better model. Replayed on the
same fitted models of 9 MovieLens-100K runs (72 partner-runs, ``benchmarks/recommend_blend_rule.py``,
docs/recommender.md "The margin on"): 4 below their alone-model on test with this margin against 13 without, for
-0.004 mean HR@10. Why not larger: on 1,000-customer partners (synthetic, 10,000 customers) one standard error kept
every blend's gain (+0.011 HR@10) and 1.645 gave up ~40 % of it (``benchmarks/recommend_margin_curve.py``)."""
ALONE_EPOCHS = 50  # the alone MF's epochs, as the simulation's local-only baseline
VALIDATION_SAMPLE = 2000
"""At most this many validation customers per fold are scored for the choice (all of them below it): the models are
still fitted on every customer, only the scoring is sampled (:func:`fedinsight.models.blend.validation_sample`)."""


@dataclass
class Served:
    """What a partner serves: the federated model (``items`` with ``trainer``'s customer embeddings), its
    alone-model on the full split, and the blend weight (1: the federated model only)."""

    weight: float
    items: ItemParams
    trainer: LocalTrainer
    alone: AloneModel | None
    choice: BlendChoice | None
    note: str = ""

    def federated_scorer(self) -> Scorer:
        return lambda rows: self.trainer.scores(self.items, rows)

    def scorer(self, split: InteractionSplit, num_items: int) -> Scorer:
        """The served scores: the blend (standardised) or the federated scores alone."""
        federated = self.federated_scorer()
        if self.alone is None or self.weight >= 1.0:
            return federated
        alone = self.alone.scorer(split, num_items)
        return lambda rows: blend(federated(rows), alone(rows), self.weight)


def validation_folds(customers: int) -> int:
    """How many validation folds a partner with ``customers`` validation customers pools: enough for about
    :data:`ONE_FOLD_CUSTOMERS` held-out interactions, at most :data:`VALIDATION_FOLDS` (one from 500 customers, two
    from 250, four below 167).

    Why: the choice picks the best of a handful of models, so on a small partner's validation customers it picks the
    luckiest more often than on many, and the test customers then see a blend whose validation gain was noise (issue
    18: on MovieLens-100K partners of ~94-118 customers, two folds left 0-4 of 8 partners 0.005-0.054 HR@10 below
    their alone-model on test). Each further fold is one more held-out interaction per customer, at the cost of one
    more fit of the federated side and the alone-models on that fold (seconds at that size)."""
    if customers >= ONE_FOLD_CUSTOMERS:
        return 1
    return min(VALIDATION_FOLDS, -(-ONE_FOLD_CUSTOMERS // max(customers, 1)))


def federated_on(split: InteractionSplit, num_items: int, items: ItemParams, cfg: BPRConfig, personalize: int,
                 seed: int | None) -> tuple[LocalTrainer, ItemParams]:
    """Fit fresh customer embeddings of ``split`` to the federated item table, then (``personalize`` > 0) fine-tune
    the table on ``split``: the federated side as this partner would serve it."""
    trainer = LocalTrainer(split, num_items, replace(cfg, optimizer="adam"), seed=seed)
    trainer.train(items, VALIDATION_FIT_EPOCHS, train_items=False)
    served = trainer.train(items, personalize)[0] if personalize > 0 else items
    return trainer, served


def _on_rows(scorer: Scorer, rows: np.ndarray) -> Scorer:
    """``scorer`` of the sampled validation customers: position r of the sample is fold position ``rows[r]``."""
    return lambda r: scorer(rows[r])


def choose_on_validation(split: InteractionSplit, validation: list[InteractionSplit], num_items: int,
                         items: ItemParams, cfg: BPRConfig, *, personalize: int, eval_seed: int,
                         seed: int | None = None) -> tuple[BlendChoice, AloneModel]:
    """The blend weight and the best alone-model, chosen on the ``validation`` folds (held-out earlier items of the
    partner's training customers); the alone-model returned is refitted on the full ``split``."""
    folds: list[Fold] = []
    customers: list[np.ndarray] = []
    fitted: dict[str, AloneModel] = {}
    first: InteractionSplit | None = None
    for fold in validation:
        rows = validation_sample(fold.num_customers, VALIDATION_SAMPLE, eval_seed)
        cands = validation_candidates(fold, split, num_items, eval_seed, rows=rows)
        trainer, fed_items = federated_on(fold, num_items, items, cfg, personalize, seed)
        alones = candidates(fold, num_items, dim=cfg.dim, epochs=ALONE_EPOCHS, seed=seed)
        if not fitted:
            fitted, first = alones, fold
        customers.append(np.asarray(fold.customer_ids)[rows])
        folds.append((cands, lambda r, t=trainer, q=fed_items, rows=rows: t.scores(q, rows[r]),
                      {name: _on_rows(model.scorer(fold, num_items), rows) for name, model in alones.items()}))
    choice = choose_folds(folds, customers=customers, margin=MARGIN)
    assert first is not None
    alone = refit_alone(fitted[choice.alone], first, split, num_items, dim=cfg.dim, seed=seed)
    return choice, alone


def fit_served(split: InteractionSplit, validation: list[InteractionSplit] | None, num_items: int, items: ItemParams,
               served_items: ItemParams, trainer: LocalTrainer, cfg: BPRConfig, *, personalize: int, eval_seed: int,
               blend_on: bool = True, seed: int | None = None) -> Served:
    """The partner's served model. ``served_items``/``trainer``: the federated model as personalised on the full
    split; ``items``: the federated table as received (personalisation is replayed on the validation split)."""
    if not blend_on:
        return Served(1.0, served_items, trainer, None, None, "blending off (--no-blend)")
    validation = [fold for fold in validation or [] if fold.num_customers >= MIN_VALIDATION_CUSTOMERS]
    if validation:  # enough folds for a steady choice; more would only cost time
        validation = validation[:validation_folds(validation[0].num_customers)]
    if not validation:
        return Served(1.0, served_items, trainer, None, None,
                      f"fewer than {MIN_VALIDATION_CUSTOMERS} validation customers: the federated model is served")
    choice, alone = choose_on_validation(split, validation, num_items, items, cfg, personalize=personalize,
                                         eval_seed=eval_seed, seed=seed)
    return Served(choice.weight, served_items, trainer, alone, choice)


def alone_arrays(served: Served) -> dict[str, np.ndarray]:
    """What the vault keeps of the alone-model for serving: an MF's tables; an item-item model is refitted from
    its lambda (closed form)."""
    alone = served.alone
    if alone is None or alone.kind != "mf":
        return {}
    assert alone.items is not None and alone.customer_embeddings is not None
    return {"alone_items": alone.items.as_matrix(), "alone_embeddings": alone.customer_embeddings}
