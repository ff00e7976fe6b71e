"""Where a partner's data is, and loading it once per process.

In a deployment the partner's SuperNode is started with ``--node-config "data-path=/srv/partner"``
(the coordinator never names partner paths). In a simulation the virtual partner with
``partition-id`` k reads ``<data-root>/partner-k`` where ``data-root`` comes in the job's config.

Every load goes through the protection pipeline (:mod:`fedinsight.partner.protection`): PII scan,
the partner's column policy (``<data-path>/protection.toml``, or ``--node-config
"protection-policy=FILE"``), tokenization, then the consent/erasure filter for the job's purpose.
Only the tokenized tables are cached; raw ids never outlive the load.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from flwr.app import Context

from fedinsight.core.errors import ConfigError
from fedinsight.data.schema import PartnerData
from fedinsight.partner.protection import PartnerVault, ProtectedPartner, ProtectionPolicy, find_policy, load_protected
from fedinsight.privacy.consent import erasure_register, resolve_purpose


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


def partner_policy(context: Context, config: dict[str, object] | None = None) -> ProtectionPolicy:
    """This partner's protection policy (``node_config['protection-policy']`` or the data folder's)."""
    explicit = context.node_config.get("protection-policy")
    return find_policy(partner_data_path(context, config), None if explicit is None else str(explicit))


_CACHE: OrderedDict[tuple[str, str, str], ProtectedPartner] = OrderedDict()
_CACHE_SIZE = 8


def _protected(path: str, policy: ProtectionPolicy) -> ProtectedPartner:
    """Cached per process (Ray actors serve many rounds); a changed policy or key ring reloads."""
    key = (path, policy.fingerprint, policy.tokenization_ring().fingerprint)
    if key not in _CACHE:
        _CACHE[key] = load_protected(path, policy)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def load_partner_data(
    context: Context, config: dict[str, object] | None = None, *, purpose: str | None = None
) -> PartnerData:
    """This partner's protected tables for the job's purpose.

    ``purpose`` (analytics, training, recommendation) defaults to ``config['purpose']``, else the
    purpose of ``config['task']``; with neither, only customers who consent to every purpose are used.
    Customer ids are tokens; declared columns are dropped or tokenized; forgotten customers are gone.
    """
    config = config or {}
    policy = partner_policy(context, config)
    path = str(partner_data_path(context, config).resolve())
    protected = _protected(path, policy)
    chosen = resolve_purpose(
        purpose or (str(config["purpose"]) if "purpose" in config else None),
        str(config["task"]) if "task" in config else None,
    )
    return protected.for_purpose(chosen, erasure_register(policy.register_url))


def partner_vault(context: Context, config: dict[str, object] | None = None) -> PartnerVault:
    """Encrypted storage for this partner's checkpoints, embeddings, feature caches and scores."""
    return PartnerVault(partner_policy(context, config))
