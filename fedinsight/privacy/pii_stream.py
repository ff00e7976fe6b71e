"""The PII scan of a table too large for memory: batch by batch, findings merged.

Why: ``partner init`` (and ``data synth --policy``) scanned every table read whole into pandas; a partner with
100 M transactions needed more than 12 GB for it. Scanning batches of rows bounds memory by the batch. A column is
a finding when it is one in **any** batch (the stricter reading: a column that looks like personal data in one
part of the table is declared), with the largest share seen. A table that fits one batch gives exactly
:func:`~fedinsight.privacy.pii.scan_table`'s findings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import pandas as pd

from fedinsight.privacy.pii import PiiFinding, scan_table


def scan_batches(table: str, batches: Iterable[pd.DataFrame], *,
                 schema_columns: Collection[str] = ()) -> list[PiiFinding]:
    """Findings for one table given as consecutive batches of its rows (see the module docstring)."""
    found: dict[str, PiiFinding] = {}
    for batch in batches:
        for finding in scan_table(table, batch, schema_columns=schema_columns):
            known = found.get(finding.column)
            if known is None or finding.share > known.share:
                found[finding.column] = finding
    return list(found.values())
