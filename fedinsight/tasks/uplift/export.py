"""A partner's own offer list (``fedinsight partner export offers``): each customer's best offer, or none.

Runs on the partner only and sends nothing: the model file holds public things (the DP-SGD weights, features and
caps, costs, tiers); the customers and their features come from one scan of the partner's engine
(:mod:`.audience_scan`: consent and erasures applied inside it, only one row per customer reaches pandas) and
their own ids from the view's ``identities()``, which only ever runs on the partner. Features are taken as of
``as_of`` (purchases strictly before it), the same fixed transforms the model was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import Partner
from fedinsight.models.uplift import BASES, HEADS, UpliftNet, predicted_uplift, set_weights
from fedinsight.tasks.uplift import policy
from fedinsight.tasks.uplift.audience_scan import engine_features_at
from fedinsight.tasks.uplift.features import FEATURES
from fedinsight.tasks.uplift.options import knots_ok

KIND = "fedinsight-uplift"
TIERS = ("low", "mid", "high")


def load_model(path: str | Path) -> dict[str, Any]:
    """An ``uplift_model.json`` written by the uplift task, checked (ConfigError naming what is wrong)."""
    p = Path(path)
    try:
        model = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--model {p}: no such file (use RUN/uplift_model.json of `simulate uplift`)") from None
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"--model {p} is not an uplift_model.json (not JSON)") from None
    if not isinstance(model, dict) or model.get("kind") != KIND:
        raise ConfigError(f"--model {p} is not an uplift_model.json written by the uplift task")
    if [(f.get("name"), f.get("cap")) for f in model.get("features", [])] != list(FEATURES):
        raise ConfigError(f"--model {p} uses features or caps this fedinsight does not know")
    if model.get("heads", "shared") not in HEADS:
        raise ConfigError(f"--model {p}: heads={model.get('heads')!r} is not a parametrisation this fedinsight knows "
                          f"({', '.join(HEADS)}); export with the fedinsight version that trained it")
    # a model file written before the tent basis has no "basis": its knots were hinges
    if model.get("basis", "hinge") not in BASES:
        raise ConfigError(f"--model {p}: basis={model.get('basis')!r} is not a basis this fedinsight knows "
                          f"({', '.join(BASES)}); export with the fedinsight version that trained it")
    knots = model.get("knots", [])
    if not (isinstance(knots, list) and all(isinstance(k, int | float) for k in knots) and knots_ok(tuple(knots))):
        raise ConfigError(f"--model {p}: its knots {knots!r} are not up to 8 increasing numbers strictly between 0 "
                          "and 1 (a model file edited or mixed up?)")
    try:
        network(model)
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--model {p}: its weights do not fit its {len(model.get('arms', []))} arms with "
                          f"heads={model.get('heads', 'shared')} and basis={model.get('basis', 'hinge')} (a model "
                          "file edited or mixed up?)") from None
    _check_policy(model, p)
    return model


def _check_policy(model: dict[str, Any], path: Path) -> None:
    """The policy's public settings: a cost per offer arm, two tier edges and a positive order-value cap."""
    arms, costs, edges = model.get("arms"), model.get("costs"), model.get("tier_edges")
    cap = model.get("order_value_cap")
    ok = (isinstance(arms, list) and len(arms) >= 2 and isinstance(costs, dict)
          and all(isinstance(costs.get(a), int | float) and costs[a] >= 0 for a in arms[1:])
          and isinstance(edges, list) and len(edges) == 2 and all(isinstance(e, int | float) for e in edges)
          and isinstance(cap, int | float) and cap > 0)
    if not ok:
        raise ConfigError(f"--model {path}: its offer costs, value-tier edges or order-value cap are missing or "
                          "malformed (write it again with `simulate uplift`)")


def network(model: dict[str, Any]) -> UpliftNet:
    net = UpliftNet(len(FEATURES), len(model["arms"]), int(model.get("hidden", 0)),
                    tuple(float(k) for k in model.get("knots", ())), str(model.get("heads", "shared")),
                    str(model.get("basis", "hinge")))
    return set_weights(net, {k: np.asarray(v, dtype=np.float32) for k, v in model["weights"].items()})  # type: ignore[return-value]


def offer_list(model: dict[str, Any], partner: Partner, as_of: str, *,
               allowed: set[str] | None = None) -> pd.DataFrame:
    """``customer_id`` (the partner's own), ``offer`` (or "none"), ``expected_value``, ``value_tier`` and each
    offer's predicted uplift, best value first; consenting, non-erased customers only. ``allowed``: the tokens of
    the customers who also consent to the list's own purpose (e.g. marketing); the others are left out."""
    try:
        when = pd.Timestamp(as_of)
    except (TypeError, ValueError):
        when = pd.NaT
    if when is pd.NaT:
        raise ConfigError(f"--as-of must be a date such as 2026-01-01 (got {as_of!r})")
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    ids, (x, order_value, spend_year, orders) = engine_features_at(partner, when)
    if allowed is not None:
        keep = ids.isin(list(allowed))
        ids, x, order_value, spend_year, orders = ids[keep], x[keep], order_value[keep], spend_year[keep], orders[keep]
    offers = list(model["arms"][1:])
    costs = np.asarray([float(model["costs"][o]) for o in offers])
    uplift = predicted_uplift(network(model), x)
    cap = float(model["order_value_cap"])
    # a model file written before the shrunk order value: its policy used the customer's own mean order alone
    value = policy.expected_order_value(order_value, orders, cap, float(model.get("order_value_prior", cap / 4.0)),
                                        float(model.get("order_value_weight", 0.0)))
    values = policy.incremental_values(uplift, value, costs)
    choice = policy.choose(uplift, value, costs)
    tiers = policy.tiers(spend_year, tuple(model["tier_edges"]))  # type: ignore[arg-type]
    frame = pd.DataFrame({
        "customer_id": partner.identities(pd.Series(ids)).to_numpy(),
        "offer": np.asarray([policy.NONE, *offers], dtype=object)[choice],
        "expected_value": np.where(choice > 0, values.max(axis=1) if len(offers) else 0.0, 0.0).round(4),
        "value_tier": np.asarray(TIERS, dtype=object)[tiers],
        **{f"uplift_{o}": uplift[:, i].round(5) for i, o in enumerate(offers)},
    })
    # ties in the customer's own id order: the list must not depend on how an export happened to be sorted
    return frame.sort_values(["expected_value", "customer_id"], ascending=[False, True],
                             kind="stable").reset_index(drop=True)
