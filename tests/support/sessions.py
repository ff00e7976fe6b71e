"""Admin and auditor tokens reach the API only through a session opened with a second factor: tests enrol the
token and open the session on the coordinator's store directly (``test_api_mfa.py`` covers the HTTP flow)."""

from __future__ import annotations

from typing import Any


def session_for(state: Any, token: str, minutes: int = 60) -> str:
    """A session token for the API token ``token`` (``fit_<id>_<secret>``) of ``state``'s coordinator."""
    token_id = token.split("_")[1]
    if not state.mfa.enrolled(token_id):
        state.mfa.enrol(token_id, account=token_id)
    return state.mfa.open_session(token_id, minutes)[0]
