"""Turning certificate bytes (PEM or PKCS#12, optionally encrypted) into what msal takes.

Parsed here rather than by msal so a wrong password or a file without a key gives
an error that names the file and the fix, before any network traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from requests_ppauth.errors import ConfigurationError


@dataclass(frozen=True)
class ParsedCertificate:
    """An unencrypted PEM key, the leaf and chain PEM, the leaf's SHA-1 thumbprint."""

    key_pem: str = field(repr=False)
    chain_pem: str
    thumbprint: str


def parse_certificate(data: bytes, password: str | None, where: str) -> ParsedCertificate:
    """Parse ``data`` (PEM bundle or PKCS#12) from ``where`` (a path or setting name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    pw = password.encode() if password else None
    certs: list[x509.Certificate]
    key: Any
    if b"-----BEGIN" in data:
        if b"PRIVATE KEY-----" not in data:  # else the error below blames a password
            raise ConfigurationError(
                f"{where} holds no private key: put the private key and the certificate "
                "in one PEM file, or use a PFX"
            )
        try:
            key = serialization.load_pem_private_key(data, pw)
        except TypeError:
            raise ConfigurationError(
                f"the private key in {where} is encrypted: set the certificate password"
                if pw is None
                else f"the private key in {where} is not encrypted: remove the certificate password"
            ) from None
        except ValueError:
            raise ConfigurationError(
                f"cannot load the private key in {where}: wrong certificate password, or the "
                "file holds no PEM private key"
            ) from None
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            certs = []
    else:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
        except ValueError:
            raise ConfigurationError(
                f"cannot open {where} as PKCS#12: wrong certificate password, or not a PEM/PFX file"
            ) from None
        certs = ([cert] if cert else []) + list(extra or [])
    if key is None:
        raise ConfigurationError(f"{where} holds no private key")
    if not certs:
        raise ConfigurationError(f"{where} holds a private key but no certificate")
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf = next(
        (
            c
            for c in certs
            if c.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == public
        ),
        None,
    )
    if leaf is None:
        raise ConfigurationError(f"no certificate in {where} matches its private key")
    chain = [leaf] + [c for c in certs if c is not leaf]
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return ParsedCertificate(
        key_pem=key_pem,
        chain_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
        thumbprint=leaf.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - x5t is SHA-1 by spec
    )
