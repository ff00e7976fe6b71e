"""The insights hello on a mapped partner: columns kept under the partner's own names are not announced."""

from __future__ import annotations

import json
import re

from support.exports import write_cn_export

from fedinsight.partner.policy_init import init_partner
from fedinsight.partner.view import PartnerView
from fedinsight.tasks.insights.client import table_columns
from fedinsight.tasks.insights.server import TABLES_JSON


def test_hello_facts_name_schema_columns_only_and_fit_their_pattern(tmp_path):
    export = write_cn_export(tmp_path / "华东零售", customers=60)
    init_partner(export.folder)
    data = PartnerView(export.folder, "analytics").tables()
    assert "商品编码" in data.transactions.columns  # kept on the partner under its own name
    facts = table_columns(data)
    assert "商品编码" not in facts["transactions"] and {"customer_id", "amount", "channel"} <= set(
        facts["transactions"])
    assert re.fullmatch(TABLES_JSON, json.dumps(facts, sort_keys=True))
