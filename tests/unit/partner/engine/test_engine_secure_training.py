"""Secure training's features come from the partner's engine and equal the pandas path's: counts, whole days and
labels exactly, the mean order value to 1e-12 relative (an exact decimal sum divided once, against pandas' float
mean of quarter amounts: tests/support/engine_data.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from support.engine_data import ERASED, OPTED_OUT, EngineOnly, own_tables, write_csv_partner

from fedinsight.core.errors import ConfigError
from fedinsight.federation.scan import naive_utc
from fedinsight.partner.erasure import forget_customers
from fedinsight.partner.policy import find_policy
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.secure_training.client import rfm_features
from fedinsight.tasks.secure_training.customer_scan import engine_rfm_features, rfm_scan


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    tables = own_tables(customers=80)
    tables["transactions"].loc[tables["transactions"].index[:4], "timestamp"] = "2025-06-01T00:00:00"  # on it
    folder = write_csv_partner(tmp_path_factory.mktemp("own") / "shop", tables)
    forget_customers(list(ERASED), find_policy(folder))
    return folder


@pytest.mark.parametrize("cutoff", ["2025-06-01", "2024-03-15"])
def test_engine_features_equal_the_pandas_path(shop, cutoff):
    view = PartnerView(shop, "analytics")
    x_pd, y_pd = rfm_features(view.tables().transactions, cutoff)
    x, y = engine_rfm_features(EngineOnly(view), cutoff)
    assert x.shape == x_pd.shape and len(x) > 20 and y.sum() > 0
    np.testing.assert_array_equal(y, y_pd)
    np.testing.assert_array_equal(x[:, [0, 2]], x_pd[:, [0, 2]])
    np.testing.assert_allclose(x[:, 1], x_pd[:, 1], rtol=1e-12, atol=0)
    # opted-out and erased customers are not among the rows
    tokens = view.scan(rfm_scan(naive_utc(cutoff)))["customer_id"]
    owners = set(view.identities(tokens).str.strip())
    assert len(owners) == len(x) and not owners & {c.strip() for c in (*OPTED_OUT, *ERASED)}


def test_a_cutoff_before_any_purchase_is_the_same_config_error(shop, tmp_path):
    view = PartnerView(shop, "analytics")
    with pytest.raises(ConfigError, match="later --cutoff"):
        engine_rfm_features(EngineOnly(view), "2020-01-01")
    lone = write_csv_partner(tmp_path / "lone", {"customers": own_tables(customers=30)["customers"]})
    with pytest.raises(ConfigError, match="no transactions table"):
        engine_rfm_features(EngineOnly(PartnerView(lone, "analytics")), "2025-06-01")
