"""What a finished simulation gives a notebook: its model, used on a partner's side, and its insights as a table.

A model is used the way a partner would use it on its own premises: :meth:`PropensityModel.score` and
:meth:`RecommenderModel.recommend` open that partner's folder through its own data view (its protection policy,
consent for the task's purpose, its erasure register), so customers who refused consent or were forgotten are
never scored or served, and the ids in the result are the partner's own ids again -- exactly what ``fedinsight
score propensity`` and ``fedinsight recommend`` do on the command line (the same functions).

:func:`insights_frame` turns a run's ``insights.json`` into one tidy row per released number: which insight,
which group, which measure, the value with its 95 % interval and noise standard deviation, or ``suppressed``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from fedinsight.core.errors import ConfigError, UnknownCustomerError
from fedinsight.federation import registry
from fedinsight.partner.side import PartnerSide, open_partner
from fedinsight.simulation.partners import Partners

INSIGHT_COLUMNS = ("insight", "kind", "group", "measure", "value", "ci_low", "ci_high", "noise_sd", "suppressed",
                   "epsilon")
RECOMMENDATION_COLUMNS = ("customer_id", "rank", "item_id", "title", "genres", "score", "exploration")


class PartnerModel:
    """A model a simulation trained, and the partners it was trained on (by folder name)."""

    task = ""

    def __init__(self, path: Path, partners: Partners) -> None:
        self.path, self.partners = Path(path), partners

    def partner(self, name: str) -> PartnerSide:
        """``name``'s own view of its data for this task's consent purpose (see the module docstring)."""
        return open_partner(self.partners.folder(name), registry.get(self.task).purpose)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, partners={self.partners.names})"


class PropensityModel(PartnerModel):
    """The repurchase-propensity / LTV model of a ``propensity`` run (``OUT/model.pt``)."""

    task = "propensity"

    def score(self, partner: str, *, as_of: str | None = None) -> pd.DataFrame:
        """One row per customer of ``partner`` who consents to training and was not erased: ``customer_id`` (the
        partner's own id), ``propensity``, ``churn_probability``, ``expected_spend``, ``ltv_tier``, ``as_of`` and
        ``horizon_days``. ``as_of``: score as of this date (default: the training cutoff)."""
        from fedinsight.models.propensity import ModelBundle  # heavy: torch
        from fedinsight.tasks.propensity.scoring import score_partner

        return score_partner(ModelBundle.load(self.path), self.partner(partner), as_of)


class RecommenderModel(PartnerModel):
    """The item model of a ``recommend`` run (``OUT/model``); customer embeddings stay with each partner."""

    task = "recommend"

    def recommend(self, partner: str, customers: str | Sequence[str] | None = None, *, k: int = 10,
                  explore: float | None = None) -> pd.DataFrame:
        """Top-``k`` items for ``customers`` of ``partner`` (its own ids; default: every customer it can serve --
        consenting to recommendations, not erased, with an embedding from training), one row per item:
        ``customer_id``, ``rank``, ``item_id``, ``title``, ``genres``, ``score``, ``exploration``.
        Naming a customer it cannot serve raises :class:`~fedinsight.core.errors.UnknownCustomerError`."""
        from fedinsight.tasks.recommend.serving import recommend_items  # heavy: torch

        side = self.partner(partner)
        wanted = [customers] if isinstance(customers, str) else list(customers) if customers is not None else None
        rows: list[dict[str, Any]] = []
        for customer in wanted if wanted is not None else self._servable(side):
            try:
                found = recommend_items(self.path, side, customer, k=k, explore=explore)
            except UnknownCustomerError:
                if wanted is not None:
                    raise
                continue  # consenting, but too few interactions to have an embedding
            rows += [{"customer_id": customer, **asdict(r)} for r in found]
        return pd.DataFrame(rows, columns=list(RECOMMENDATION_COLUMNS))

    def _servable(self, side: PartnerSide) -> list[str]:
        """The partner's own ids of the customers its view hands out for recommendations."""
        data = side.data()
        frame = data.customers if data.customers is not None else data.interactions
        if frame is None:
            return []
        tokens = pd.Series(sorted(set(frame["customer_id"].astype(str))))  # type: ignore[index]
        return [str(c) for c in side.identities(tokens)]


def model_of(task: str, out_dir: Path, partners: Partners | None) -> PartnerModel:
    """The model a run of ``task`` wrote into ``out_dir`` (ConfigError if the task trains none)."""
    kinds: dict[str, tuple[type[PartnerModel], str]] = {"propensity": (PropensityModel, "model.pt"),
                                                         "recommend": (RecommenderModel, "model")}
    if task not in kinds:
        raise ConfigError(f"a {task} run trains no model (propensity and recommend runs do)")
    cls, name = kinds[task]
    path = out_dir / name
    if not path.exists():
        raise ConfigError(f"{out_dir} holds no {name}: the {task} run wrote no model")
    if partners is None:
        raise ConfigError(f"the partners of {out_dir} are unknown: open the run with fi.Run.open(folder)")
    return cls(path, partners)


# --- insights as a table ---------------------------------------------------------------------------------

def insights_frame(document: dict[str, Any]) -> pd.DataFrame:
    """One row per released number of an ``insights.json`` (see the module docstring)."""
    rows = []
    for insight in document.get("insights", []):
        base = {"insight": insight.get("name"), "kind": insight.get("kind"), "epsilon": insight.get("epsilon")}
        for group, measure, leaf in _leaves(insight.get("result") or {}):
            hidden = bool(leaf.get("suppressed")) and "value" not in leaf
            value, noise = (math.nan, math.nan) if hidden else (leaf["value"], leaf.get("noise_sd", math.nan))
            low, high = (math.nan, math.nan) if hidden else (leaf.get("ci95") or (math.nan, math.nan))
            rows.append({**base, "group": group, "measure": measure, "value": _num(value), "ci_low": _num(low),
                         "ci_high": _num(high), "noise_sd": _num(noise), "suppressed": hidden})
    return pd.DataFrame(rows, columns=list(INSIGHT_COLUMNS))


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)  # summary JSON holds null for a non-finite number


def read_insights(out_dir: Path) -> pd.DataFrame:
    path = out_dir / "insights.json"
    if not path.is_file():
        raise ConfigError(f"{out_dir} holds no insights.json: only an insights run releases insights")
    return insights_frame(json.loads(path.read_text()))


def _label(row: dict[str, Any]) -> str | None:
    """The group a result row is about: its ``keys`` (group-by insights) or its first text field."""
    if isinstance(row.get("keys"), dict):
        return "/".join(str(v) for v in row["keys"].values())
    return next((v for v in row.values() if isinstance(v, str)), None)


def _released(node: dict[str, Any]) -> bool:
    return ("value" in node and "ci95" in node) or node == {"suppressed": True}


def _leaves(node: Any, group: str | None = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str | None, str, dict]]:
    """(group, measure path, released number or ``{"suppressed": True}``) for every number under ``node``."""
    if isinstance(node, dict):
        if _released(node):
            yield group, ".".join(path), node
            return
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _leaves(value, group, (*path, key))
    elif isinstance(node, list):
        for item in node:
            if not isinstance(item, dict):
                continue
            label = _label(item)
            found = list(_leaves(item, label if label is not None else group, path[:-1]))
            if not found and item.get("suppressed") is True:
                found = [(label if label is not None else group, ".".join(path[:-1]), {"suppressed": True})]
            yield from found
