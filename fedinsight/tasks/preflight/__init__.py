"""The ``preflight`` task: every partner loads its data through its protection pipeline and says how.

Why: before a training or insight job spends privacy budget, the coordinator wants to know that every
partner has a protection policy in force -- no undeclared personal data, keys present, erasure register
readable. Each partner answers with its policy's fingerprint and which columns it drops and tokenizes, or
with the (value-free) reason it refused. No rows, no counts: the job releases nothing about customers
and spends no budget.

The smallest task, and the one ``docs/architecture.md`` walks through: options, one partner handler, a
manifest of public values, a workflow of one message round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from flwr.app import ConfigRecord, Message

from fedinsight.core.errors import FedinsightError, ProtectionPolicyError
from fedinsight.federation.manifest import PUBLIC, Manifest, Release
from fedinsight.federation.messages import reply
from fedinsight.federation.options import Options, option
from fedinsight.federation.task import Handler, Partner, Plan, Session, Task, TaskResult
from fedinsight.privacy.consent import PURPOSES

RECORD = "preflight"
log = logging.getLogger(__name__)
COLUMNS = r"[A-Za-z0-9_.,: -]{0,4000}"


@dataclass(frozen=True)
class PreflightOptions(Options):
    purpose: str = option("analytics", "The consent purpose to load the data for.", choices=PURPOSES)


class PreflightTask(Task):
    name = "preflight"
    title = "Protection check"
    purpose = "analytics"
    options: ClassVar[type[Options]] = PreflightOptions

    def purpose_for(self, config: Mapping[str, Any]) -> str:
        return str(config.get("purpose", self.purpose))

    def handlers(self) -> Mapping[str, Handler]:
        return {"query": check}

    def plan(self, session: Session) -> Plan:
        release = Release("check", RECORD, dict.fromkeys(("status", "error", "policy", "dropped", "tokenized")),
                          PUBLIC, kind="text",
                          patterns={"status": "ok|refused|error", "error": r"(?s).{0,2000}", "policy": "[0-9a-f]{0,16}",
                                    "dropped": COLUMNS, "tokenized": COLUMNS},
                          what="whether the partner's data loads, and which columns its policy drops or tokenizes",
                          reason="names columns and the policy's fingerprint; fedinsight's error messages never "
                                 "quote a data value, other errors travel as their type only")
        return Plan(Manifest(self.name, (release,)))

    def run(self, session: Session) -> TaskResult:
        replies = session.ask("query", "check")
        rows = []
        for node, msg in sorted(replies.items(), key=lambda kv: session.name(kv[0])):
            rec = msg.content[RECORD]
            rows.append({"partner": session.name(node), "status": str(rec["status"]), "error": str(rec["error"]),
                         "policy": str(rec["policy"]), "dropped": _split(rec["dropped"]),
                         "tokenized": _split(rec["tokenized"])})
        return TaskResult({"purpose": session.options.purpose, "results": rows,  # type: ignore[attr-defined]
                           "ok": all(r["status"] == "ok" for r in rows)})

    def headline(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        return [(r["partner"], r["status"] + (f": {r['error']}" if r["error"] else
                                              f" (drops {', '.join(r['dropped']) or 'nothing'})"))
                for r in summary.get("results", [])]

    def check_result(self, summary: dict[str, Any]) -> None:
        """A preflight with a refusal fails: its message names each refusing partner and why (no table is
        printed for a failed run, so the reasons travel in the error)."""
        if not summary.get("ok", True):
            why = "; ".join(f"{r['partner']}: {r['error'] or r['status']}" for r in summary.get("results", [])
                            if r["status"] != "ok")
            raise ProtectionPolicyError(f"some partners refused to load their data -- {why}")


def _split(value: Any) -> list[str]:
    return [c for c in str(value).split(",") if c]


def check(msg: Message, partner: Partner) -> Message:
    """Load this partner's data for the job's purpose and describe the protection applied."""
    record = ConfigRecord({"status": "ok", "error": "", "policy": "", "dropped": "", "tokenized": ""})
    try:
        report = partner.data().meta["protection"]
    except FedinsightError as exc:  # public_message leaves data values out (a validation error's offending values)
        record["status"], record["error"] = "refused", f"{type(exc).__name__}: {exc.public_message}"[:2000]
    except Exception as exc:  # a library's message might quote a data value: only its type leaves the partner
        log.exception("preflight failed on this partner")
        record["status"], record["error"] = "error", f"{type(exc).__name__} (details are in the partner's log)"
    else:
        assert isinstance(report, dict)
        record["policy"] = str(report["policy"])
        record["dropped"] = ",".join(str(c) for c in report["dropped"])
        record["tokenized"] = ",".join(str(c) for c in report["tokenized"])
    return reply(msg, **{RECORD: record})


TASK = PreflightTask()
