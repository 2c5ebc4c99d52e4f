"""Certificates for the simulator: a CA that signs the cloud's certificate, and a self-signed gateway."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = timedelta(days=3650)
_RENEW_BEFORE = timedelta(days=30)  # regenerate certificates this close to their end
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1", "::1")


def write_private(path: Path, data: bytes) -> None:
    """Write a secret (a private key) to `path`, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the file may have existed with wider permissions
        handle.write(data)


@dataclass(frozen=True)
class Certificates:
    """Where the simulator's certificates and keys are (PEM files)."""

    ca_cert: Path
    ca_key: Path
    cloud_cert: Path
    cloud_key: Path
    gateway_cert: Path
    gateway_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> Certificates:
        """The file names the simulator uses in its state directory."""
        return cls(
            ca_cert=directory / "ca.pem",
            ca_key=directory / "ca-key.pem",
            cloud_cert=directory / "cloud.pem",
            cloud_key=directory / "cloud-key.pem",
            gateway_cert=directory / "gateway.pem",
            gateway_key=directory / "gateway-key.pem",
        )

    @property
    def gateway_cert_sha256(self) -> str:
        """SHA-256 of the gateway certificate (DER), lower-case hex: what a client pins."""
        return certificate_sha256(self.gateway_cert)

    def cloud_context(self) -> ssl.SSLContext:
        """A server TLS context for the simulated cloud."""
        return _server_context(self.cloud_cert, self.cloud_key)

    def gateway_context(self) -> ssl.SSLContext:
        """A server TLS context for the simulated gateway."""
        return _server_context(self.gateway_cert, self.gateway_key)


def certificate_sha256(path: Path) -> str:
    """SHA-256 of the certificate in the PEM file `path`, over its DER form, lower-case hex."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def ensure_certificates(directory: Path, now: datetime | None = None) -> Certificates:
    """The certificates in `directory`, created when missing, unreadable or near their end."""
    # Clients check validity against the real clock, so `now` is real time, not the simulator's.
    now = now or datetime.now(UTC)
    files = Certificates.in_directory(directory)
    if not _usable(files, now):
        _create(files, now)
    return files


def _usable(files: Certificates, now: datetime) -> bool:
    try:
        for cert_path, key_path in (
            (files.ca_cert, files.ca_key),
            (files.cloud_cert, files.cloud_key),
            (files.gateway_cert, files.gateway_key),
        ):
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if cert.not_valid_after_utc - _RENEW_BEFORE < now or cert.not_valid_before_utc > now:
                return False
    except (OSError, ValueError):
        return False
    return True


def _create(files: Certificates, now: datetime) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envoylog simulator CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    cloud_key = ec.generate_private_key(ec.SECP256R1())
    cloud_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cloud_cert = (
        _leaf(_builder(cloud_name, ca_name, cloud_key.public_key(), now), cloud_key.public_key())
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    # A real gateway's certificate is self-signed and clients do not verify it; this one is the same.
    gateway_key = ec.generate_private_key(ec.SECP256R1())
    gateway_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "envoy")])
    gateway_cert = _leaf(
        _builder(gateway_name, gateway_name, gateway_key.public_key(), now),
        gateway_key.public_key(),
        extra_names=("envoy", "envoy.local"),
    ).sign(gateway_key, hashes.SHA256())

    for key, key_path in (
        (ca_key, files.ca_key),
        (cloud_key, files.cloud_key),
        (gateway_key, files.gateway_key),
    ):
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(key_path, pem)
    for cert, cert_path in (
        (ca_cert, files.ca_cert),
        (cloud_cert, files.cloud_cert),
        (gateway_cert, files.gateway_cert),
    ):
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + _VALIDITY)
    )


def _leaf(
    builder: x509.CertificateBuilder, public_key: ec.EllipticCurvePublicKey, extra_names: tuple[str, ...] = ()
) -> x509.CertificateBuilder:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in (*_LOOPBACK_NAMES, *extra_names)]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _LOOPBACK_IPS]
    return (
        builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
