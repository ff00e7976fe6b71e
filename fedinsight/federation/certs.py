"""Keys and certificates for a deployment, made with ``cryptography``.

What a deployment needs and why:

* a private **CA** (``ca.crt`` / ``ca.key``): partners trust only this CA, so a man in the middle cannot
  present another certificate for the coordinator's address;
* the coordinator's **TLS certificate** (``coordinator.crt`` / ``coordinator.key``) signed by the CA, with
  subject alternative names for every host name and IP address partners and analysts use to reach it
  (TLS clients check SANs, not the common name);
* one **authentication key pair per partner** (``partners/<id>.key`` / ``partners/<id>.pub``): ECDSA on
  NIST P-384 in OpenSSH format, which is what ``flwr supernode register`` reads (public key) and what
  ``flower-supernode --auth-supernode-private-key`` reads (private key). The SuperLink admits only
  SuperNodes whose public key was registered, so an unregistered machine cannot join the federation.

Every file holding a private key is created with mode 0600 (never world- or group-readable, not even
for an instant: the file is opened with that mode). Existing files are never overwritten silently.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedinsight.core.errors import ConfigError
from fedinsight.core.files import write_private, write_public

CURVE = ec.SECP384R1()
"""NIST P-384: what Flower's SuperNode authentication documents; also used for the CA and TLS keys."""

PARTNER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class CertBundle:
    """Paths of everything :func:`init_certs` wrote."""

    out: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    partner_keys: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # id -> (private, public)

    def as_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "ca_cert": str(self.ca_cert),
            "ca_key": str(self.ca_key),
            "server_cert": str(self.server_cert),
            "server_key": str(self.server_key),
            "partners": {p: {"private_key": str(k), "public_key": str(pub)}
                         for p, (k, pub) in self.partner_keys.items()},
        }


def check_partner_id(partner_id: str) -> str:
    """Partner ids name files, budgets and SuperNode configs: letters, digits, ``_.-``, at most 64."""
    if not PARTNER_ID_RE.match(partner_id):
        raise ConfigError(
            f"partner id '{partner_id}' is not valid: use 1-64 letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit)"
        )
    return partner_id


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedinsight"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not re.match(r"^[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})$", host):
                raise ConfigError(f"'{host}' is neither an IP address nor a DNS name (--host)") from None
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_ca(days: int = 3650) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA allowed to sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(CURVE)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fedinsight CA"))
        .issuer_name(_name("fedinsight CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return cert, key


def make_server_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: list[str], days: int = 825
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate for ``hosts`` (DNS names and/or IPs) signed by the CA."""
    if not hosts:
        raise ConfigError("the coordinator certificate needs at least one host name or IP (--host)")
    key = ec.generate_private_key(CURVE)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return cert, key


def make_partner_keypair() -> tuple[bytes, bytes]:
    """(OpenSSH private key, OpenSSH public key line) for SuperNode authentication."""
    key = ec.generate_private_key(CURVE)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + b"\n"


def write_partner_keypair(out: Path, partner_id: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``out/<id>.key`` (0600) and ``out/<id>.pub``; the public one is what the coordinator registers."""
    check_partner_id(partner_id)
    private, public = make_partner_keypair()
    priv_path = write_private(out / f"{partner_id}.key", private, overwrite=overwrite)
    pub_path = write_public(out / f"{partner_id}.pub", public, overwrite=overwrite)
    return priv_path, pub_path


def init_certs(
    out: Path, *, hosts: list[str], partners: list[str], days: int = 825, overwrite: bool = False
) -> CertBundle:
    """Create the CA, the coordinator's TLS certificate and key, and each partner's key pair under ``out``.

    Layout: ``ca.crt``, ``ca.key``, ``coordinator.crt``, ``coordinator.key``, ``partners/<id>.key|.pub``.
    """
    ids = [check_partner_id(p) for p in partners]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"partner ids must be unique (got {', '.join(ids)})")
    out = Path(out)
    targets = [out / n for n in ("ca.crt", "ca.key", "coordinator.crt", "coordinator.key")]
    targets += [out / "partners" / f"{p}.{ext}" for p in ids for ext in ("key", "pub")]
    if not overwrite and (existing := [str(t) for t in targets if t.exists()]):
        raise ConfigError(f"refusing to overwrite existing key material: {', '.join(existing)} (pass --overwrite)")
    ca_cert, ca_key = make_ca(days=max(days, 3650))
    server_cert, server_key = make_server_cert(ca_cert, ca_key, hosts, days=days)
    pem = serialization.Encoding.PEM
    bundle = CertBundle(
        out=out,
        ca_cert=write_public(out / "ca.crt", ca_cert.public_bytes(pem), overwrite=overwrite),
        ca_key=write_private(out / "ca.key", _pem_key(ca_key), overwrite=overwrite),
        server_cert=write_public(out / "coordinator.crt", server_cert.public_bytes(pem), overwrite=overwrite),
        server_key=write_private(out / "coordinator.key", _pem_key(server_key), overwrite=overwrite),
    )
    for pid in ids:
        bundle.partner_keys[pid] = write_partner_keypair(out / "partners", pid, overwrite=overwrite)
    return bundle


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """A partner's OpenSSH ECDSA public key, or a ConfigError saying what is wrong with the file."""
    try:
        key = serialization.load_ssh_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"partner public key {path} does not exist") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an OpenSSH public key ({exc}); create one with `fedinsight certs "
                          "partner-key`") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{path} is not an ECDSA key (SuperNode authentication needs a NIST EC key)")
    return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A partner's OpenSSH ECDSA private key; refuses keys readable by group or others."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"private key {path} does not exist")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"private key {path} is readable by other users; run: chmod 600 {path}")
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted OpenSSH private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an ECDSA key (SuperNode authentication needs a NIST EC key)")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """A PEM certificate, or a ConfigError naming the file."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"certificate {path} does not exist") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate ({exc})") from None


def certificate_hosts(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses in a certificate's SAN extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
