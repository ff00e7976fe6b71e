"""How coordinator and partners talk: one message layout and one way to carry a partner's error.

Every task's messages are ``<kind>.<task>`` (``query.insights``, ``train.propensity`` ...) with the job's
settings in a ConfigRecord named ``config``, whose ``phase`` says which step of the task it is. A
partner that refuses or cannot do a step for a reason the user can fix (its budget, its data, its
policy) answers with an error reply ``"<ErrorType>: <message>"``; the coordinator turns it back into the
same typed error, so the CLI exits with that error's code and message. Messages of fedinsight's errors
are value-free by construction; anything else becomes its type name only.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import ConfigRecord, Error, Message, RecordDict

import fedinsight.core.errors as errors
from fedinsight.core.errors import FedinsightError, PartnerReplyError

CONFIG = "config"
PHASE = "phase"
USER_ERROR_CODE = 4_000
"""Flower error code of a reply that carries a :class:`FedinsightError` (``reason`` = "Type: message")."""
BUG_ERROR_CODE = 4_001
"""Flower error code of a reply whose handler failed on something that is not a user error (see its log)."""

log = logging.getLogger(__name__)


def message_type(kind: str, task: str) -> str:
    return f"{kind}.{task}"


def request(kind: str, task: str, node: int, config: dict[str, Any], **records: Any) -> Message:
    """A message to one partner: the job's config (with its phase) and any further records."""
    return Message(RecordDict({CONFIG: ConfigRecord(config), **records}), dst_node_id=node,
                   message_type=message_type(kind, task))


def config_of(msg: Message) -> dict[str, Any]:
    return dict(msg.content[CONFIG]) if CONFIG in msg.content else {}


def reply(msg: Message, **records: Any) -> Message:
    return Message(RecordDict(records), reply_to=msg)


def error_reply(msg: Message, exc: BaseException) -> Message:
    """The reply for a failed handler: a user error's type and public message (a validation error's offending
    values stay on the partner); for anything else, the type only (a library's message might quote a data value)
    and the traceback in the partner's own log."""
    if isinstance(exc, FedinsightError):
        return Message(Error(code=USER_ERROR_CODE, reason=f"{type(exc).__name__}: {exc.public_message}"),
                       reply_to=msg)
    log.error("handler failed on this partner", exc_info=exc)
    return Message(Error(code=BUG_ERROR_CODE, reason=f"{type(exc).__name__} (details are in the partner's log)"),
                   reply_to=msg)


def partner_error(reason: str, *, partner: str, what: str) -> FedinsightError:
    """The typed error a partner reported (``"Type: message"``), naming the partner and the step."""
    name, sep, message = reason.partition(": ")
    cls = getattr(errors, name, None) if sep else None
    if isinstance(cls, type) and issubclass(cls, FedinsightError):
        if cls is errors.DataValidationError:
            return errors.DataValidationError(f"partner {partner}: {message}", file=f"partner {partner}")
        return cls(f"partner {partner} refused '{what}': {message}")
    return PartnerReplyError(f"partner {partner} failed on '{what}': {reason[:2000]}")
