"""Key material for the emulator: a private CA, a TLS server certificate, a token
signing key, and client certificates for apps that authenticate with one.

Keys are cached per process: generating RSA keys is the slowest part of starting
an emulator, and a per-test emulator should start in milliseconds.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from requests_ppauth.testing._jwt import b64url_encode


@functools.cache
def _rsa_key(slot: str) -> rsa.RSAPrivateKey:
    del slot  # distinct cache entries, one key each
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes for the CA (what clients trust) and the server's chain and key."""

    ca_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes = field(repr=False)


@functools.cache
def tls_material() -> TLSMaterial:
    """A CA and a server certificate for localhost, 127.0.0.1 and ::1 (EC P-256: fast)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    start = _now() - _dt.timedelta(days=1)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("requests-ppauth emulator CA"))
        .issuer_name(_name("requests-ppauth emulator CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=29))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return TLSMaterial(
        ca_pem=ca_cert.public_bytes(pem),
        server_cert_pem=cert.public_bytes(pem),
        server_key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def signing_key() -> tuple[rsa.RSAPrivateKey, str]:
    """The key the emulated Entra ID signs access tokens with, and its ``kid``."""
    key = _rsa_key("signing")
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, b64url_encode(hashlib.sha1(der).digest())  # noqa: S324 - a key id, like Entra's x5t


def federation_key() -> rsa.RSAPrivateKey:
    """The key of the emulated external identity provider (workload identity federation)."""
    return _rsa_key("federation")


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate an app registers and the key that signs its client assertions.

    ``thumbprint`` is the SHA-1 hex msal wants with ``{"private_key", "thumbprint"}``;
    the emulator also accepts the SHA-256 (``x5t#S256``) form msal sends with
    ``{"private_key", "public_certificate"}``.
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    thumbprint: str
    thumbprint_sha256: str

    @property
    def pem_bundle(self) -> bytes:
        """Key and certificate in one PEM file, the form ``certificate_path`` takes."""
        return self.key_pem + self.cert_pem

    def pfx(self, password: str | None = None) -> bytes:
        """The same key and certificate as PKCS#12, optionally encrypted."""
        key = serialization.load_pem_private_key(self.key_pem, None)
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        return pkcs12.serialize_key_and_certificates(b"client", key, cert, None, enc)


def make_client_certificate(
    subject: str = "requests-ppauth test client", *, days: int = 30, slot: str | None = None
) -> ClientCertificate:
    """A self-signed RSA certificate for certificate-credential tests.

    ``slot`` names a cached key: the same slot gives the same key within a process,
    which keeps test suites fast. ``None`` reuses the default client key.
    """
    key = _rsa_key(f"client:{slot}")
    start = _now() - _dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return ClientCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        thumbprint=hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - X.509 thumbprint
        thumbprint_sha256=hashlib.sha256(der).hexdigest().upper(),
    )
