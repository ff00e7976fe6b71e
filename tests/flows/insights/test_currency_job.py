"""A job's rate table on the deployed path: partners convert what they read, or refuse in hello before any charge.

The coordinator's loop runs against the partners' real ClientApp in this process (``run_in_process``). One
partner's folder declares CNY (a ``mapping.toml`` holding only ``currency``); the others declare nothing.
"""

from __future__ import annotations

import pytest
from support.federations import PARTNER_NAMES, own_federation, run_in_process

import fedinsight.tasks  # noqa: F401 - registers every task
from fedinsight.core.errors import ConfigError
from fedinsight.federation.messages import config_of
from fedinsight.privacy.ledger import PrivacyLedger

CNY_PARTNER = PARTNER_NAMES[0]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    fed = own_federation(tmp_path_factory.mktemp("own") / "partners", customers=900)
    (fed.folder(CNY_PARTNER) / "mapping.toml").write_text('currency = "CNY"\n', encoding="utf-8")
    return fed


def test_a_partner_outside_the_table_refuses_in_hello_and_nothing_is_charged(federation, tmp_path):
    with pytest.raises(ConfigError, match=rf"refused 'query hello': partner {CNY_PARTNER}'s amounts are in CNY.*"
                                          r"--rates CNY=<USD per CNY>"):
        run_in_process("insights", federation, tmp_path, currency="USD", rates="EUR=1.08")
    ledger = tmp_path / "ledger.db"
    assert not ledger.exists() or PrivacyLedger(f"sqlite:///{ledger}").partners() == []  # nobody was charged


def test_every_message_carries_the_table_and_the_summary_records_it(federation, tmp_path):
    run = run_in_process("insights", federation, tmp_path, currency="usd", rates="CNY=0.138")
    assert run.summary["currency"] == {"reporting": "USD", "rates": {"CNY": 0.138}}
    assert run.grid.sent and all(config_of(m).get("rates") == "CNY=0.138" and config_of(m).get("currency") == "USD"
                                 for m in run.grid.sent)
    assert run.summary["insights"] and not run.grid.replies[0].has_error()
