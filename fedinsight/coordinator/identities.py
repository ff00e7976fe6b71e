"""Partner identity: which Flower node id authenticated with which partner's registered public key.

Flower's SuperNode authentication binds a node id to a public key: ``flwr supernode register KEY.pub`` returns
the node id, and the SuperLink rejects every request whose node id is not the one registered for the key that
signed it. A partner's *name* in fedinsight (the ``partner-id`` it states in hello, the ledger entry that is
charged) is a different thing the partner only claims. The coordinator records, at start, the node id each
configured partner's key was registered under (``<state>/partner-nodes.json``), and every job's hello refuses a
node that claims a partner id other than the one its key was registered for
(:meth:`fedinsight.federation.task.Session.hello`): a partner holding its own valid key cannot spend or read as
another partner.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fedinsight.core.errors import StateIntegrityError
from fedinsight.core.files import private_file

FILE_NAME = "partner-nodes.json"


def write_partner_nodes(state_dir: Path, nodes: dict[str, int | None]) -> Path:
    """Record partner id -> Flower node id (None: registered earlier, node id unknown; such a partner is refused)."""
    path = Path(state_dir) / FILE_NAME
    tmp = private_file(path.with_suffix(".tmp"))
    tmp.write_text(json.dumps(nodes, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_partner_nodes(state_dir: Path | None) -> dict[str, int | None] | None:
    """The recorded bindings, or None when there is no record (a simulation: no keys, nothing to bind)."""
    if state_dir is None:
        return None
    path = Path(state_dir) / FILE_NAME
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        return {str(k): (None if v is None else int(v)) for k, v in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise StateIntegrityError(f"{path} is unreadable ({exc}); restart the coordinator to re-register the "
                                  "partners' keys") from None
