"""``partner.toml``: validated with pydantic (:mod:`fedinsight.core.settings`), refused with a message that
says what to fix.

Example ``partner.toml``::

    [partner]
    id = "retail"
    data-path = "/srv/fedinsight/data"
    state-dir = "/srv/fedinsight/state"
    mapping = "/srv/fedinsight/data/mapping.toml"   # optional: how its own exports are read
    epsilon = 10.0                    # this partner's own lifetime cap
    engine = "duckdb"                 # or "spark" with spark-master = "spark://host:7077" (docs/scale.md)
    [superlink]
    address = "coordinator.example.com:9092"
    ca-cert = "ca.crt"
    private-key = "retail.key"
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator

from fedinsight.core.errors import ConfigError
from fedinsight.core.settings import Model as _Model
from fedinsight.core.settings import Port, format_errors, read_config
from fedinsight.federation.certs import load_certificate, load_private_key


class PartnerSection(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    data_path: Path
    state_dir: Path = Path("state")
    protection_policy: Path | None = None  # default: <data-path>/protection.toml (names the tokenization keys)
    mapping: Path | None = None  # how its own exports are read; default: <data-path>/mapping.toml if present
    # the partner's own lifetime cap, enforced on its machine whatever a coordinator sends (``local-epsilon`` /
    # ``local-delta``: the spellings of earlier versions, still read)
    epsilon: float = Field(10.0, gt=0, validation_alias=AliasChoices("epsilon", "local-epsilon"))
    delta: float = Field(1e-6, gt=0, lt=1, validation_alias=AliasChoices("delta", "local-delta"))
    # the partner-side engine (fedinsight.partner.engine): its own choice, never sent to the coordinator
    engine: str | None = None  # duckdb (default) | spark
    spark_master: str | None = None
    engine_memory: str | None = None
    db_url: str | None = None  # its canonical tables in a database (SQLAlchemy URL) instead of data-path's files
    db_tables: str | None = None


class PartnerSuperLinkSection(_Model):
    address: str
    ca_cert: Path
    private_key: Path
    max_retries: int | None = Field(None, ge=0)
    max_wait_time: float | None = Field(None, gt=0)
    # a SuperNode that was admitted and then exits (the coordinator restarted: its heartbeat gets 401, or the
    # link was down longer than max-wait-time) is started again after 1, 2, 4 ... seconds, at most this many
    reconnect: bool = True
    reconnect_max_delay: float = Field(60.0, gt=0)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"'{value}' must be HOST:PORT (the coordinator's [superlink] port)")
        return value


class PartnerRuntimeSection(_Model):
    """The SuperNode's local ClientApp API (loopback only: it is how Flower runs the partner's ClientApp)."""

    port: Port = 9094


class PartnerConfig(_Model):
    partner: PartnerSection
    superlink: PartnerSuperLinkSection
    runtime: PartnerRuntimeSection = PartnerRuntimeSection()

    source: Path | None = Field(None, exclude=True)

    @property
    def state_dir(self) -> Path:
        return self.partner.state_dir

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "partner.pid"

    @property
    def children_dir(self) -> Path:
        """PID files of the supervisor's children and their descendants (:mod:`fedinsight.core.children`)."""
        return self.state_dir / "pids"

    @property
    def ledger_url(self) -> str:
        """The partner's own ledger: its local budget is enforced on its side too."""
        return f"sqlite:///{self.state_dir / 'partner-ledger.db'}"


def load_partner_config(path: str | Path, *, check_files: bool = True) -> PartnerConfig:
    """Parse and validate ``partner.toml``; with ``check_files``, also the CA certificate and private key."""
    path = Path(path)
    try:
        config = PartnerConfig.model_validate({**read_config(path), "source": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(format_errors(path, exc)) from None
    if check_files:
        check_partner_files(config)
    return config


def check_partner_files(config: PartnerConfig) -> None:
    load_certificate(config.superlink.ca_cert)
    load_private_key(config.superlink.private_key)
    policy = config.partner.protection_policy
    if policy is not None and not policy.is_file():
        raise ConfigError(f"[partner] protection-policy {policy} does not exist")
    mapping = config.partner.mapping
    if mapping is not None and not mapping.is_file():
        raise ConfigError(f"[partner] mapping {mapping} does not exist")
