"""One redaction for every database URL that reaches a file, a log, stdout or a report: no passwords."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@\s]+):[^@\s]+@")


def redact_secrets(text: str) -> str:
    """Database URLs in ``text`` without their passwords (``postgresql://user:***@host/db``): reports, summaries
    and recorded commands are shared with people who must not get the coordinator's database credentials."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def safe_url(url: str) -> str:
    """A database URL without its password (for logs and summaries)."""
    return redact_secrets(str(url))
