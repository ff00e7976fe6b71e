"""Where a partner's data is, and loading it once per process.

In a deployment the partner's SuperNode is started with ``--node-config "data-path=/srv/partner"``
(the coordinator never names partner paths). In a simulation the virtual partner with
``partition-id`` k reads ``<data-root>/partner-k`` where ``data-root`` comes in the job's config.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flwr.app import Context

from fedinsight.data.federation import load_partner_folder
from fedinsight.data.schema import PartnerData
from fedinsight.errors import ConfigError


def partner_data_path(context: Context, config: dict[str, object] | None = None) -> Path:
    """The folder of this partner's canonical tables."""
    node = context.node_config
    if "data-path" in node:
        return Path(str(node["data-path"]))
    root = (config or {}).get("data-root")
    if root is None or "partition-id" not in node:
        raise ConfigError("partner has no data: start it with --node-config data-path=FOLDER")
    return Path(str(root)) / f"partner-{int(node['partition-id'])}"


def partner_id(context: Context) -> str:
    """This partner's name: ``node_config['partner-id']`` in a deployment, ``partner-<k>`` in simulation.

    It names the partner's privacy budget in the coordinator's ledger.
    """
    node = context.node_config
    if "partner-id" in node:
        return str(node["partner-id"])
    if "partition-id" in node:
        return f"partner-{int(node['partition-id'])}"
    raise ConfigError("partner has no id: start it with --node-config partner-id=NAME")


@lru_cache(maxsize=8)
def _load(path: str) -> PartnerData:
    partners = load_partner_folder(path)
    if len(partners) != 1:
        raise ConfigError(f"{path} holds {len(partners)} partners' data; point data-path at one partner's folder")
    return next(iter(partners.values()))


def load_partner_data(context: Context, config: dict[str, object] | None = None) -> PartnerData:
    """This partner's validated tables (cached per process: Ray actors serve many rounds)."""
    return _load(str(partner_data_path(context, config).resolve()))
