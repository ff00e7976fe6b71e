"""``coordinator.toml``: validated with pydantic (:mod:`fedinsight.core.settings`), refused with a message that
says what to fix.

Example ``coordinator.toml``::

    [coordinator]
    federation = "marketing"          # the name `fedinsight job run --federation` uses
    state-dir = "state"               # database, PID file, logs, Flower's home
    [superlink]
    host = "0.0.0.0"                  # Fleet + Control APIs share this one port in flwr 1.41
    port = 9092
    [tls]
    ca-cert = "certs/ca.crt"
    cert = "certs/coordinator.crt"
    key = "certs/coordinator.key"
    [api]
    host = "0.0.0.0"
    port = 8443
    [[partners]]
    id = "retail"
    public-key = "certs/partners/retail.pub"
    epsilon = 10.0
    delta = 1e-6
    [recalibration]                   # optional: `fedinsight job schedule` submits what is due
    every = "quarter"
    task = "propensity"
    options = { epsilon = 0.5 }

"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from fedinsight.coordinator.schedule import RecalibrationSection
from fedinsight.core.errors import ConfigError
from fedinsight.core.settings import Model as _Model
from fedinsight.core.settings import Port, check_host, format_errors, read_config
from fedinsight.federation.certs import certificate_hosts, load_certificate, load_public_key


class CoordinatorSection(_Model):
    federation: str = Field("fedinsight", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    state_dir: Path = Path("state")
    database_url: str | None = None  # default: SQLite in state-dir
    accountant: Literal["rdp", "pld"] = "rdp"
    catalogue_preset: str = "synthetic"  # insight catalogue vocabulary (channels, campaigns) for queries
    stop_timeout: float = Field(15.0, gt=0, le=300)


class SuperLinkSection(_Model):
    host: str = "0.0.0.0"
    port: Port = 9092
    public_address: str | None = None  # what partners and `flwr` dial; default 127.0.0.1:<port>

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @property
    def control_address(self) -> str:
        return self.public_address or f"127.0.0.1:{self.port}"


class TlsSection(_Model):
    ca_cert: Path
    cert: Path
    key: Path


class ApiSection(_Model):
    host: str = "127.0.0.1"
    port: Port = 8443
    tls: bool = True  # serve HTTPS with the coordinator certificate
    workers: int = Field(1, ge=1, le=16)
    # larger request bodies are refused (413) before they are read; an insight spec is a few kilobytes
    max_body_bytes: int = Field(65536, ge=1024, le=16 * 2**20)
    # admins and auditors always need a second factor (a TOTP code opens a session); analysts when this is set
    mfa_for_analysts: bool = False
    session_minutes: int = Field(60, ge=1, le=24 * 60)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)


class AbuseSection(_Model):
    """Per-token request limits and probing detection (see :mod:`fedinsight.coordinator.abuse`)."""

    requests_per_second: float = Field(20.0, gt=0)
    burst: int = Field(40, ge=1)
    insight_reads_per_minute: int = Field(600, ge=1)
    probe_window_s: float = Field(3600.0, gt=0)
    probe_max_variants: int = Field(3, ge=1)
    # callers without a valid token (failed logins included), per client address
    anonymous_requests_per_second: float = Field(2.0, gt=0)
    anonymous_burst: int = Field(20, ge=1)
    # access anomalies per token (see coordinator/anomaly.py): an alert above max(floor, factor x the token's
    # average hour of the past week); the token is locked at lock-factor x that
    alert_requests_per_hour: int = Field(3000, ge=1)
    alert_records_per_hour: int = Field(5000, ge=1)
    alert_distinct_insights_per_hour: int = Field(300, ge=1)
    alert_bytes_per_hour: int = Field(50_000_000, ge=1)
    alert_overlapping_queries_per_day: int = Field(8, ge=1)
    alert_baseline_factor: float = Field(5.0, ge=1)
    lock_factor: float = Field(2.0, gt=1)


class PartnerEntry(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    public_key: Path
    epsilon: float = Field(gt=0)
    delta: float = Field(1e-6, gt=0, lt=1)


class CoordinatorConfig(_Model):
    coordinator: CoordinatorSection = CoordinatorSection()
    superlink: SuperLinkSection = SuperLinkSection()
    tls: TlsSection
    api: ApiSection = ApiSection()
    abuse: AbuseSection = AbuseSection()
    partners: list[PartnerEntry] = Field(min_length=1)
    recalibration: RecalibrationSection | None = None

    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> CoordinatorConfig:
        ids = [p.id for p in self.partners]
        if dupes := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"partner ids must be unique; repeated: {', '.join(dupes)}")
        keys = [p.public_key for p in self.partners]
        if len(set(keys)) != len(keys):
            raise ValueError("two partners share one public-key file; each partner needs its own key pair")
        if self.superlink.port == self.api.port and self.superlink.host == self.api.host:
            raise ValueError(f"[superlink] and [api] cannot both use port {self.api.port}")
        return self

    @property
    def state_dir(self) -> Path:
        return self.coordinator.state_dir

    @property
    def database_url(self) -> str:
        return self.coordinator.database_url or f"sqlite:///{self.state_dir / 'fedinsight.db'}"

    @property
    def flwr_home(self) -> Path:
        """Flower's home for the coordinator (apps, CLI config): never ``~/.flwr``."""
        return self.state_dir / "flwr"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "coordinator.pid"

    @property
    def children_dir(self) -> Path:
        """PID files of the supervisor's children and their descendants (:mod:`fedinsight.core.children`)."""
        return self.state_dir / "pids"

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.api.host in ("0.0.0.0", "::") else self.api.host
        return f"{'https' if self.api.tls else 'http'}://{host}:{self.api.port}"



def load_coordinator_config(path: str | Path, *, check_files: bool = True) -> CoordinatorConfig:
    """Parse and validate ``coordinator.toml``; with ``check_files``, also the certificates and keys it names."""
    path = Path(path)
    try:
        config = CoordinatorConfig.model_validate({**read_config(path), "source": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(format_errors(path, exc)) from None
    if check_files:
        check_coordinator_files(config)
    return config


def check_coordinator_files(config: CoordinatorConfig) -> None:
    """The TLS material parses, the certificate names the advertised host, every partner key is an EC key."""
    load_certificate(config.tls.ca_cert)
    cert = load_certificate(config.tls.cert)
    if not config.tls.key.is_file():
        raise ConfigError(f"[tls] key {config.tls.key} does not exist")
    if config.tls.key.stat().st_mode & 0o077:
        raise ConfigError(f"[tls] key {config.tls.key} is readable by other users; run: chmod 600 {config.tls.key}")
    host = config.superlink.control_address.rpartition(":")[0].strip("[]")
    if host not in certificate_hosts(cert):
        raise ConfigError(
            f"the coordinator certificate {config.tls.cert} is not valid for '{host}' (it names "
            f"{', '.join(certificate_hosts(cert)) or 'no hosts'}); re-run `fedinsight certs init --host {host} ...`"
        )
    for partner in config.partners:
        load_public_key(partner.public_key)
