"""A partner labels its own customers with the federation's segments (``fedinsight partner export segments``).

Runs on the partner only and sends nothing: the model file holds public things (features, caps, reference date,
centres); the customers' vectors come from the partner's engine for analytics (consent and erasures applied), and
their own ids from the view's ``identities()``, which only ever runs on the partner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedinsight.core.errors import ConfigError
from fedinsight.federation.task import Partner
from fedinsight.tasks.segments.customer_scan import engine_vectors
from fedinsight.tasks.segments.features import feature, known, partner_zone
from fedinsight.tasks.segments.kmeans import assign

KIND = "fedinsight-segments"


def load_model(path: str | Path) -> dict[str, Any]:
    """A ``segments.json`` written by the segments task, checked (ConfigError naming what is wrong)."""
    p = Path(path)
    try:
        model = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--model {p}: no such file (use RUN/segments.json of `simulate segments`)") from None
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"--model {p} is not a segments.json (not JSON)") from None
    if not isinstance(model, dict) or model.get("kind") != KIND:
        raise ConfigError(f"--model {p} is not a segments.json written by the segments task")
    names = model.get("features") or []
    if any(not known(str(n)) or float(model.get("caps", {}).get(n, -1)) != feature(str(n)).cap for n in names):
        raise ConfigError(f"--model {p} uses features or caps this fedinsight does not know: {names}")
    centres = np.asarray(model.get("centres"), dtype=float)
    if centres.ndim != 2 or centres.shape[1] != len(names) or not np.all(np.isfinite(centres)):
        raise ConfigError(f"--model {p}: its centres do not match its {len(names)} features")
    return model


def label_customers(model: dict[str, Any], partner: Partner) -> pd.DataFrame:
    """``customer_id`` (the partner's own), ``segment`` (1..k) and ``segment_words``, one row per consenting,
    non-erased customer with a purchase before the model's reference date."""
    names = tuple(model["features"])
    vectors = engine_vectors(partner, str(model["as_of"]), names, partner_zone({"timezone": partner.timezone()}))
    labels = assign(vectors.to_numpy(), np.asarray(model["centres"], dtype=float)) + 1
    words = list(model.get("words") or [""] * len(model["centres"]))
    ids = partner.identities(pd.Series(vectors.index.astype(str)))
    return pd.DataFrame({"customer_id": ids.to_numpy(), "segment": labels,
                         "segment_words": [words[j - 1] for j in labels]})
