"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest

from fedinsight.partner.side import PartnerSide


@pytest.fixture
def no_whole_tables(monkeypatch):
    """Every partner of a job fails if it loads its whole tables into pandas: only the engine may answer."""
    def refuse(self):  # noqa: ANN001, ANN202
        raise AssertionError(f"partner {self.partner_id} loaded its whole tables")
    monkeypatch.setattr(PartnerSide, "data", refuse)
