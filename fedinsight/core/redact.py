"""One redaction for every database URL that reaches a file, a log, stdout or a report: no passwords.

Applied where text leaves the process (summaries, run records, reports, error lines), not where URLs are built:
a URL must keep its password to connect, and one missed call site would leak it. ``redact_tree`` covers a whole
summary at the moment it is written or printed, whatever key a task put the URL under.
"""

from __future__ import annotations

import re
from typing import Any

# scheme://user:password@  (the user may be empty; the password runs to the last '@' before the host)
_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@\s]*):\S*@")
# ?password=... or &password=... (libpq and some drivers take credentials as query parameters)
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&\s]+", re.IGNORECASE)


def redact_secrets(text: str) -> str:
    """Database URLs in ``text`` without their passwords (``postgresql://user:***@host/db``): reports, summaries
    and recorded commands are shared with people who must not get the coordinator's database credentials."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def safe_url(url: str) -> str:
    """A database URL without its password (for logs and summaries)."""
    return redact_secrets(str(url))


def redact_tree(value: Any) -> Any:
    """``value`` (a summary: dicts, lists, strings, numbers) with every string passed through redact_secrets."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return value
