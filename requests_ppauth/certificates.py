"""Turning certificate bytes (PEM or PKCS#12, optionally encrypted) into what msal takes.

Parsed here rather than by msal so a wrong password or a file without a key gives
an error that names the file and the fix, before any network traffic. No frame that
raises holds the key or the password (see :func:`parse_certificate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from requests_ppauth._redacted import HiddenText, Secret, SecretDict
from requests_ppauth.errors import ConfigurationError


@dataclass(frozen=True)
class ParsedCertificate:
    """An unencrypted PEM key, the leaf and chain PEM, the leaf's SHA-1 thumbprint."""

    key_pem: str = field(repr=False)
    chain_pem: str
    thumbprint: str


def parse_certificate(data: bytes, password: str | None, where: str) -> ParsedCertificate:
    """Parse ``data`` (PEM bundle or PKCS#12) from ``where`` (a path or setting name).

    Raises :class:`ConfigurationError` for a wrong password, a file without a key or
    certificate, or a key no certificate matches. Error reporters record the locals of
    every frame an exception passes through (``pytest --showlocals``, Sentry), so this
    frame lets go of the key bytes and the password before anything can raise, and the
    parsing, whose frames hold them, never raises: it returns the error message.
    """
    material = Secret((data, password), "certificate and password")
    del data, password
    outcome = _parse(material, where)
    if isinstance(outcome, str):
        raise ConfigurationError(outcome)
    return outcome


def msal_credential(parsed: ParsedCertificate, *, send_chain: bool) -> SecretDict:
    """msal's ``client_credential`` for ``parsed``: the private key with the thumbprint
    (RS256, ``x5t``) or the chain (PS256, ``x5c``), in a dict whose repr, and the key's,
    hide the key: it is a local of msal's constructor, which fetches the authority's
    OpenID configuration and can fail."""
    credential = SecretDict(private_key=HiddenText(parsed.key_pem))
    if send_chain:
        credential["public_certificate"] = parsed.chain_pem
    else:
        credential["thumbprint"] = parsed.thumbprint
    return credential


def _parse(material: Secret[tuple[bytes, str | None]], where: str) -> ParsedCertificate | str:
    """:func:`_load`, with anything else cryptography raises turned into a message (by
    type only: a message could quote the input)."""
    try:
        return _load(*material.reveal(), where)
    except Exception as exc:  # _load's frames hold the key: no exception may leave
        return (
            f"cannot read the certificate in {where} ({type(exc).__name__}): use a PEM or PFX file"
        )


def _load(data: bytes, password: str | None, where: str) -> ParsedCertificate | str:
    """The parsed certificate, or why not (returned, not raised: see parse_certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    pw = password.encode() if password else None
    certs: list[x509.Certificate]
    key: Any
    if b"-----BEGIN" in data:
        if b"PRIVATE KEY-----" not in data:  # else the error below blames a password
            return (
                f"{where} holds no private key: put the private key and the certificate "
                "in one PEM file, or use a PFX"
            )
        try:
            key = serialization.load_pem_private_key(data, pw)
        except TypeError:
            return (
                f"the private key in {where} is encrypted: set the certificate password"
                if pw is None
                else f"the private key in {where} is not encrypted: remove the certificate password"
            )
        except ValueError:
            return (
                f"cannot load the private key in {where}: wrong certificate password, or the "
                "file holds no PEM private key"
            )
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            certs = []
    else:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
        except ValueError:
            return (
                f"cannot open {where} as PKCS#12: wrong certificate password, or not a PEM/PFX file"
            )
        certs = ([cert] if cert else []) + list(extra or [])
    if key is None:
        return f"{where} holds no private key"
    if not certs:
        return f"{where} holds a private key but no certificate"
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
        return f"no certificate in {where} matches its private key"
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
