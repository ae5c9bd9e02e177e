"""TLS for the listeners: PEM files from config, or a self-signed pair made on first run.

Browsers give a page the camera only in a secure context (HTTPS, or plain HTTP on localhost),
so a real deployment runs with ``tls.mode = "files"`` or ``"self-signed"``.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from web.config import HuishangConfig, TlsMode

__all__ = ["make_self_signed", "server_ssl_context"]

logger = logging.getLogger(__name__)


def make_self_signed(cert: Path, key: Path, hosts: list[str]) -> None:
    """Write a self-signed ECDSA P-256 certificate valid for *hosts* (names or IPs), 825 days."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Huishang " + hosts[0])])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def server_ssl_context(config: HuishangConfig) -> ssl.SSLContext | None:
    """The listeners' TLS context for *config*, making a self-signed pair when asked to."""
    tls = config.tls
    if tls.mode is TlsMode.OFF:
        return None
    cert = tls.cert or config.data_dir / "tls" / "huishang.crt"
    key = tls.key or config.data_dir / "tls" / "huishang.key"
    if tls.mode is TlsMode.SELF_SIGNED and not (cert.exists() and key.exists()):
        hosts = sorted({config.web.host, config.signalling.host, "localhost", "127.0.0.1"})
        make_self_signed(cert, key, hosts)
        logger.warning("made a self-signed certificate at %s; browsers will ask to trust it", cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
