"""``coordinator.toml`` and ``partner.toml``: validated with pydantic, refused with a message that says what to fix.

Relative paths in a file are relative to the file's own folder, so a deployment folder can be moved as
a whole. Every key is spelled with dashes, like Flower's own TOML files. A typo'd key is an error, not
silently ignored: a misspelt ``enable-supernode-auth``-style setting must never weaken a deployment.

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

Example ``partner.toml``::

    [partner]
    id = "retail"
    data-path = "/srv/fedinsight/data"
    state-dir = "/srv/fedinsight/state"
    local-epsilon = 10.0
    [superlink]
    address = "coordinator.example.com:9092"
    ca-cert = "ca.crt"
    private-key = "retail.key"
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedinsight.errors import ConfigError

Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=lambda s: s.replace("_", "-"),
                              frozen=True)


def _check_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not value or any(c in value for c in " /:@"):
            raise ValueError(f"'{value}' is not a host name or IP address") from None
    return value


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
        return _check_host(value)

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

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)


class AbuseSection(_Model):
    """Per-token request limits and probing detection (see :mod:`fedinsight.server.abuse`)."""

    requests_per_second: float = Field(20.0, gt=0)
    burst: int = Field(40, ge=1)
    insight_reads_per_minute: int = Field(600, ge=1)
    probe_window_s: float = Field(3600.0, gt=0)
    probe_max_variants: int = Field(3, ge=1)


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
    def api_url(self) -> str:
        host = "127.0.0.1" if self.api.host in ("0.0.0.0", "::") else self.api.host
        return f"{'https' if self.api.tls else 'http'}://{host}:{self.api.port}"


class PartnerSection(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    data_path: Path
    state_dir: Path = Path("state")
    protection_policy: Path | None = None  # default: <data-path>/protection.toml (names the tokenization keys)
    local_epsilon: float = Field(10.0, gt=0)
    local_delta: float = Field(1e-6, gt=0, lt=1)


class PartnerSuperLinkSection(_Model):
    address: str
    ca_cert: Path
    private_key: Path
    max_retries: int | None = Field(None, ge=0)
    max_wait_time: float | None = Field(None, gt=0)

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
    def ledger_url(self) -> str:
        """The partner's own ledger: its local budget is enforced on its side too."""
        return f"sqlite:///{self.state_dir / 'partner-ledger.db'}"


# --- loading ---------------------------------------------------------------------------------------

def _resolve(data: Any, base: Path, keys: set[str]) -> Any:
    """Resolve relative paths (for the dashed keys in ``keys``) against the config file's folder."""
    if isinstance(data, dict):
        return {k: (str((base / v).resolve()) if k in keys and isinstance(v, str) and not Path(v).is_absolute()
                    else _resolve(v, base, keys)) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve(v, base, keys) for v in data]
    return data


_PATH_KEYS = {"state-dir", "ca-cert", "cert", "key", "public-key", "data-path", "protection-policy", "private-key"}


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{where}: {msg}")
    return f"{path} is not a valid configuration: " + "; ".join(lines)


def _read(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return _resolve(data, path.resolve().parent, _PATH_KEYS)


def load_coordinator_config(path: str | Path, *, check_files: bool = True) -> CoordinatorConfig:
    """Parse and validate ``coordinator.toml``; with ``check_files``, also the certificates and keys it names."""
    path = Path(path)
    try:
        config = CoordinatorConfig.model_validate({**_read(path), "source": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    if check_files:
        check_coordinator_files(config)
    return config


def load_partner_config(path: str | Path, *, check_files: bool = True) -> PartnerConfig:
    """Parse and validate ``partner.toml``; with ``check_files``, also the CA certificate and private key."""
    path = Path(path)
    try:
        config = PartnerConfig.model_validate({**_read(path), "source": path.resolve()})
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None
    if check_files:
        check_partner_files(config)
    return config


def check_coordinator_files(config: CoordinatorConfig) -> None:
    """The TLS material parses, the certificate names the advertised host, every partner key is an EC key."""
    from fedinsight.server.certs import certificate_hosts, load_certificate, load_public_key

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


def check_partner_files(config: PartnerConfig) -> None:
    from fedinsight.server.certs import load_certificate, load_private_key

    load_certificate(config.superlink.ca_cert)
    load_private_key(config.superlink.private_key)
    policy = config.partner.protection_policy
    if policy is not None and not policy.is_file():
        raise ConfigError(f"[partner] protection-policy {policy} does not exist")


def dump_toml(data: dict[str, Any]) -> str:
    """Write a small TOML document (what `certs init` uses to emit starter config files)."""

    def scalar(v: Any) -> str:
        if isinstance(v, list | tuple):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for section, body in data.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{k} = {scalar(v)}" for k, v in row.items() if v is not None]
            lines.append("")
    return "\n".join(lines)
