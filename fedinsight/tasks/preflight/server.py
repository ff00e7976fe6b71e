"""The ``preflight`` job: ask every partner to load its data through the protection pipeline.

Why: before a training or insight job spends privacy budget, the coordinator wants to know that every
partner has a protection policy in force -- no undeclared personal data, keys present, erasure register
readable. Each partner answers with its policy's fingerprint and which columns it drops and tokenizes,
or with the (value-free) reason it refused. Nothing customer-level is released: no rows, no counts, so
the job spends no privacy budget.
"""

from __future__ import annotations

import json

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

from fedinsight.federation.partners import wait_for_partners

WAIT_SECONDS = 120.0




def run(grid: Grid, context: Context) -> None:
    """Send ``query.preflight`` to every partner; store the per-partner report in ``context.state``."""
    rc = context.run_config
    nodes = wait_for_partners(grid, int(rc["partners"]), WAIT_SECONDS)
    config = ConfigRecord({"task": "preflight", "purpose": str(rc.get("purpose", "analytics"))})
    if "data-root" in rc:
        config["data-root"] = str(rc["data-root"])
    messages = [Message(RecordDict({"config": config}), dst_node_id=n, message_type="query.preflight") for n in nodes]
    rows = []
    for reply in grid.send_and_receive(messages):
        if reply.has_error():
            rows.append({"partner": f"node-{reply.metadata.src_node_id}", "status": "error",
                         "error": reply.error.reason})
            continue
        rec = reply.content["preflight"]
        rows.append({"partner": str(rec["partner"]), "status": str(rec["status"]), "error": str(rec["error"]),
                     "policy": str(rec["policy"]), "dropped": list(rec["dropped"]),
                     "tokenized": list(rec["tokenized"])})
    rows.sort(key=lambda r: r["partner"])
    context.state["preflight"] = ConfigRecord({"report": json.dumps(rows)})
