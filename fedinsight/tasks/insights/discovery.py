"""Private key discovery: which campaigns, channels, categories ... the federation's customers have, without any
partner sending its list of values.

Why: an analyst's spec may say ``channels = "discover"`` instead of naming them. A partner's raw list of values
would reveal a value held by one customer (a one-off campaign code, a rare region). So each partner counts, per
value, the customers who have it -- each customer towards at most ``k`` values of a dimension (their earliest)
-- and releases only the values whose **noisy** count clears a threshold, with OpenDP's threshold mechanisms
(:func:`fedinsight.privacy.mechanisms.threshold_release`; Gaussian or Laplace like the rest of the batch). A
value held by few customers shows only with probability ``delta`` (priced into the threshold). The release is
charged on the ledger with the batch (it is one more entry of the batch's budget split), its thresholding delta
with it (:func:`charged_event`: every ledger takes it from its budget's delta), and declared in the manifest like
every other release.

The coordinator keeps, per dimension, the values any partner released, ranked by their summed noisy counts,
at most ``max_keys``: post-processing of DP outputs. What is *not* found: a value that clears the threshold at
no single partner (e.g. 40 customers at each of three partners with a threshold of 50) -- declare such keys.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from dp_accounting import dp_event

from fedinsight.core.errors import ConfigError, PartnerReplyError
from fedinsight.data.schema import PartnerData
from fedinsight.federation.manifest import Release
from fedinsight.privacy.allocation import QueryNoise, query_noise
from fedinsight.privacy.ledger import THRESHOLD_DELTA_SHARE, ThresholdDeltaEvent
from fedinsight.privacy.mechanisms import threshold_for_delta, threshold_release
from fedinsight.tasks.insights.aggregates import OTHER, _first_k_keys
from fedinsight.tasks.insights.customer_features import FeatureRules, Features, customer_features
from fedinsight.tasks.insights.spec import PLACEHOLDER, VOCABULARIES, SpecJob, discovery_threshold_floor

NAME = "key-discovery"
"""The budget entry (and manifest release) of key discovery in a batch's split."""
RECORD = "keys"
MAX_KEY_LENGTH = 64
_KEY = re.compile(r'[^"\\\x00-\x1f\x7f]{1,' + str(MAX_KEY_LENGTH) + "}")
"""A discoverable value: up to 64 characters of any script, no quote, backslash or control character (so the
reply's JSON needs no escapes and the manifest's pattern can pin it down)."""


def keys_per_customer(vocabularies: Sequence[str], k: int) -> int:
    """How many (dimension, value) counts one customer can add to: 1 per customer attribute, ``k`` per event or
    transaction column. The release's L0 (and L1, and squared L2) bound."""
    return sum(1 if VOCABULARIES[v].table == "customers" else k for v in vocabularies)


def reply_pattern(vocabularies: Sequence[str], max_keys: int) -> str:
    """The regex a partner's reply must match: ``{"channels":[["value",123],...],...}``, nothing else."""
    item = r'\["' + _KEY.pattern + r'",-?\d{1,12}\]'
    listing = r"\[(?:" + item + r"(?:," + item + r"){0," + str(max_keys - 1) + r"})?\]"
    name = "(?:" + "|".join(re.escape(f'"{v}"') for v in vocabularies) + ")"
    more = str(len(vocabularies) - 1)
    return r"\{(?:" + name + ":" + listing + "(?:," + name + ":" + listing + "){0," + more + r"})?\}"


# --- the plan (coordinator) --------------------------------------------------------------------------

def wire_of(job: SpecJob, vocabs: Sequence[str], noise: QueryNoise, *, min_group_size: int,
            delta: float) -> dict[str, Any]:
    """What partners receive: the dimensions, the bound, the noise, the threshold and the delta it was priced at."""
    d = job.spec.discovery
    k = keys_per_customer(vocabs, d.max_keys_per_customer)
    max_delta = d.delta if d.delta is not None else delta * THRESHOLD_DELTA_SHARE
    threshold = threshold_for_delta(noise.mechanism, noise.multiplier, k, max_delta,
                                    floor=discovery_threshold_floor(job.spec, min_group_size))
    return {"features": job.features,
            "dimensions": [{"name": v, "table": VOCABULARIES[v].table, "column": VOCABULARIES[v].column}
                           for v in vocabs],
            "max_keys_per_customer": d.max_keys_per_customer, "max_keys": d.max_keys, "delta": delta,
            "noise": {"mechanism": noise.mechanism, "multiplier": noise.multiplier},
            "threshold": threshold, "max_delta": max_delta}


def charged_event(noise: QueryNoise, max_delta: float) -> dp_event.DpEvent:
    """What one discovery costs every ledger: the noisy counts' event and the threshold's delta (the chance a key
    of a handful of customers clears it) -- the delta the coordinator's message names, so a partner's own ledger
    holds whatever that is."""
    return dp_event.ComposedDpEvent([noise.event, ThresholdDeltaEvent(float(max_delta))])


def release_of(wire: dict[str, Any], noise: QueryNoise) -> Release:
    vocabs = [d["name"] for d in wire["dimensions"]]
    k = keys_per_customer(vocabs, int(wire["max_keys_per_customer"]))
    bound = f"L1 {k}" if noise.mechanism == "laplace" else f"L2 {math.sqrt(k):.4g}"
    return Release(
        "discover", RECORD, {RECORD: None}, f"{noise.mechanism}-threshold", kind="text",
        patterns={RECORD: reply_pattern(vocabs, int(wire["max_keys"]))},
        what=(f"DP key discovery of {', '.join(vocabs)}: the values whose noisy customer count reaches "
              f"{wire['threshold']:g} on the partner, with those noisy counts (at most {wire['max_keys']} per "
              "dimension)"),
        sensitivity=(f"{bound} per customer (at most {wire['max_keys_per_customer']} values per event/transaction "
                     f"dimension, 1 per customer attribute), plus delta {wire['max_delta']:.2g} for thresholding"),
        event=charged_event(noise, wire["max_delta"]))


def combine(replies: Sequence[dict[str, list[list[Any]]]], wire: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per dimension, the values any partner released, most (noisy) customers first, at most ``max_keys``."""
    out: dict[str, list[dict[str, Any]]] = {}
    max_keys = int(wire["max_keys"])
    for dim in wire["dimensions"]:
        totals: dict[str, float] = {}
        partners: dict[str, int] = {}
        for reply in replies:
            for key, count in reply.get(dim["name"], []):
                totals[str(key)] = totals.get(str(key), 0.0) + float(count)
                partners[str(key)] = partners.get(str(key), 0) + 1
        ranked = sorted(totals, key=lambda k: (-totals[k], k))[:max_keys]
        out[dim["name"]] = [{"key": k, "partners": partners[k], "customers_noisy": round(totals[k])} for k in ranked]
    return out


def parse_reply(text: str) -> dict[str, list[list[Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise PartnerReplyError("a partner's key-discovery reply is not JSON") from None
    if not isinstance(data, dict):
        raise PartnerReplyError("a partner's key-discovery reply is not an object")
    return data


# --- the partner ---------------------------------------------------------------------------------------

def value_ok(value: Any) -> bool:
    """A value discovery may release (see :data:`_KEY`)."""
    return isinstance(value, str) and value not in (OTHER, PLACEHOLDER) and _KEY.fullmatch(value) is not None


def local_counts(features: Features, dimensions: Sequence[dict[str, Any]], k: int) -> dict[str, dict[str, float]]:
    """Customers per value of each dimension, each customer counted towards at most ``k`` values per event or
    transaction column (their earliest) and one value per customer attribute. Exact; never leaves the partner."""
    out: dict[str, dict[str, float]] = {}
    for dim in dimensions:
        table, column = str(dim["table"]), str(dim["column"])
        if table == "customers":
            frame = features.customers
            if column not in frame.columns:
                out[dim["name"]] = {}
                continue
            values, cust, ts, cap = frame[column], np.arange(features.n), np.zeros(features.n, dtype=np.int64), 1
        else:
            rows = features.events if table == "events" else features.transactions
            if column not in rows.frame.columns:
                out[dim["name"]] = {}
                continue
            values, cust, ts, cap = rows.frame[column], rows.cust, rows.ts, k
        raw = values.astype("string").to_numpy(dtype=object, na_value=None)
        uniques, codes = np.unique(np.array([v if value_ok(v) else "" for v in raw], dtype=object),
                                   return_inverse=True)
        ok = np.array([u != "" for u in uniques])[codes] if len(codes) else np.zeros(0, dtype=bool)
        cust, codes, ts = np.asarray(cust)[ok], np.asarray(codes)[ok], np.asarray(ts)[ok]
        keep = _first_k_keys(cust, codes, ts, len(uniques), cap)
        pairs = np.unique(cust[keep].astype(np.int64) * max(len(uniques), 1) + codes[keep])
        counts = np.bincount(pairs % max(len(uniques), 1), minlength=len(uniques))
        out[dim["name"]] = {str(uniques[i]): float(c) for i, c in enumerate(counts) if c > 0}
    return out


def dimensions_of(wire: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The wire's dimensions (each a known vocabulary on its own column) and the per-customer key cap ``k``."""
    dimensions = wire.get("dimensions")
    if not isinstance(dimensions, list) or not dimensions:
        raise ConfigError("key discovery needs a non-empty list of dimensions")
    unknown = [d.get("name") for d in dimensions if VOCABULARIES.get(str(d.get("name"))) is None
               or (VOCABULARIES[str(d["name"])].table, VOCABULARIES[str(d["name"])].column) != (d.get("table"),
                                                                                               d.get("column"))]
    if unknown:
        raise ConfigError(f"key discovery of unknown dimension(s) {unknown}")
    return dimensions, int(wire["max_keys_per_customer"])


def discover(data: PartnerData, wire: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """This partner's key-discovery release from tables in memory (in-process runs; a partner counts through its
    engine: :func:`~.engine_discovery.discover`): per dimension, the values whose noisy count clears the
    threshold."""
    dimensions, k = dimensions_of(wire)
    features = customer_features(data, FeatureRules.from_dict(dict(wire.get("features") or {})))
    return release(local_counts(features, dimensions, k), wire)


def release(counts: dict[str, dict[str, float]], wire: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The thresholded noisy release of the exact ``counts`` (:func:`local_counts`' shape)."""
    dimensions, k = dimensions_of(wire)
    noise = query_noise(str(wire["noise"]["mechanism"]), wire["noise"]["multiplier"])  # type: ignore[arg-type]
    flat = {f"{i}\x1f{key}": c for i, d in enumerate(dimensions) for key, c in counts[d["name"]].items()}
    released = threshold_release(flat, mechanism=noise.mechanism, multiplier=noise.multiplier,
                                 keys_per_unit=keys_per_customer([d["name"] for d in dimensions], k),
                                 threshold=float(wire["threshold"]), max_delta=float(wire["max_delta"]))
    out: dict[str, list[list[Any]]] = {}
    for i, d in enumerate(dimensions):
        prefix = f"{i}\x1f"
        found = [(key[len(prefix):], value) for key, value in released.counts.items() if key.startswith(prefix)]
        found.sort(key=lambda kv: (-kv[1], kv[0]))  # post-processing: the largest first, at most max_keys
        out[d["name"]] = [[key, int(round(value))] for key, value in found[: int(wire["max_keys"])]]
    return out


def reply_text(found: dict[str, list[list[Any]]]) -> str:
    return json.dumps(found, ensure_ascii=False, separators=(",", ":"))
