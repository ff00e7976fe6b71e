"""The insights HTTP API (FastAPI; schema at ``/openapi.json``).

Who may do what is in :mod:`fedinsight.coordinator.auth`; abuse limits in :mod:`fedinsight.coordinator.abuse`.
Every request except the unauthenticated ``/health`` and the schema itself is appended to the audit
log with who made it, what it asked for and the HTTP outcome — refusals (401, 403, 429) included.

The API serves only what jobs released into the insight store (noisy aggregates with their error bars,
model summaries) and
the ledger's budget figures. There is no endpoint for partner-level data because the coordinator has
none to serve.

Laid out like full-stack-fastapi-template's ``app/api``: :mod:`.main` builds the app (``create_app``, and
``app_from_env``, the uvicorn factory), :mod:`.deps` holds the shared dependencies, :mod:`.schemas` the
request and response models, :mod:`.audit` the audit middleware, and :mod:`.routes` one router per resource.
"""

from fedinsight.coordinator.api.deps import Submitter
from fedinsight.coordinator.api.main import app_from_env, create_app
from fedinsight.coordinator.api.routes.jobs import REPORT_CSP

__all__ = ["REPORT_CSP", "Submitter", "app_from_env", "create_app"]
