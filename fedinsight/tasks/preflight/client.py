"""The partner's side of the ``preflight`` job: load through the protection pipeline, report how.

The reply names columns and the policy fingerprint only -- no rows, no counts, no values -- and a
refusal carries the pipeline's error message, which by construction never contains a data value.
"""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedinsight.core.errors import FedinsightError
from fedinsight.partner.clientapp import app
from fedinsight.partner.view import load_partner_data, partner_id

logger = logging.getLogger(__name__)


@app.query("preflight")
def preflight(msg: Message, context: Context) -> Message:
    """Load this partner's data for the job's purpose and describe the protection applied."""
    config = dict(msg.content["config"])
    record = ConfigRecord({"partner": partner_id(context), "status": "ok", "error": "", "policy": "",
                           "dropped": [], "tokenized": []})
    try:
        report = load_partner_data(context, config).meta["protection"]
    except FedinsightError as exc:  # our messages are value-free by construction
        record["status"], record["error"] = "refused", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a library's message might quote a data value: only its type leaves the partner
        logger.exception("preflight failed on this partner")
        record["status"], record["error"] = "error", f"{type(exc).__name__} (details are in the partner's log)"
    else:
        assert isinstance(report, dict)
        record["policy"] = str(report["policy"])
        record["dropped"] = [str(c) for c in report["dropped"]]
        record["tokenized"] = [str(c) for c in report["tokenized"]]
    return Message(RecordDict({"preflight": record}), reply_to=msg)
