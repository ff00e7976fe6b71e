"""A partner refuses a distributed-noise plan whose noise shares cannot survive the drop-outs it tolerates.

Each partner adds 1/shares of the noise variance; a sum may be unmasked after losing ``max_dropouts`` partners.
With ``shares + max_dropouts`` above the partners, a sum could be unmasked with less noise than the ledger charged.
"""

from __future__ import annotations

import pytest

from fedinsight.core.errors import SecureAggregationError
from fedinsight.federation.secagg import check_shares, shares_of


@pytest.mark.parametrize("partners, honest, dropouts", [(3, 0, 0), (3, 0, 1), (5, 3, 1), (10, 10, 2)])
def test_the_coordinators_own_plans_pass_and_name_the_honest_partners_they_assume(partners, honest, dropouts):
    shares = shares_of(partners, honest, dropouts)
    assert check_shares(partners, shares, dropouts) == (honest or partners)


@pytest.mark.parametrize("partners, shares, dropouts", [(3, 3, 1), (5, 5, 2), (3, 0, 0), (3, 2, -1)])
def test_more_shares_than_the_drop_outs_leave_are_refused(partners, shares, dropouts):
    with pytest.raises(SecureAggregationError, match="less noise than charged"):
        check_shares(partners, shares, dropouts)
