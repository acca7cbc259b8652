"""A self-signed certificate for a loopback TLS server (``wss://``), and the contexts around it.

Zoom's media URLs are ``wss://``; tests and ``bench fullpath --tls`` serve the same over
loopback with a certificate made on the spot. The client side trusts exactly that certificate
(verification stays on, hostname included): the point is to read through the same TLS stack,
never to weaken it. Files, not objects, cross process boundaries: a benchmark's simulator and
measured processes each load their own context from the same two PEM files.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK: Final = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class SelfSignedCertificate:
    """The PEM files of one self-signed certificate and its private key."""

    cert_file: Path
    key_file: Path

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        host: str = LOOPBACK,
        valid_for: datetime.timedelta = datetime.timedelta(days=1),
    ) -> SelfSignedCertificate:
        """A fresh P-256 key and a certificate for the IP address ``host`` (its subject
        alternative name, which hostname checking matches), written as ``cert.pem`` and
        ``key.pem`` into ``directory`` (created if missing)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + valid_for)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        made = cls(cert_file=directory / "cert.pem", key_file=directory / "key.pem")
        made.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        made.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        made.key_file.chmod(0o600)
        return made

    def server_context(self) -> ssl.SSLContext:
        """A server context presenting this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context (certificate and hostname verified) that trusts exactly this
        certificate."""
        return ssl.create_default_context(cafile=str(self.cert_file))


__all__ = ["LOOPBACK", "SelfSignedCertificate"]
