"""Just enough JWS for the emulator: RS256/PS256 signing and verification.

Written against ``cryptography`` directly (already a dependency of msal) so the
emulator does not lean on PyJWT, which msal only pulls in transitively.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHMS = ("RS256", "PS256")


class JWTError(ValueError):
    """A token that cannot be parsed or whose signature does not verify."""


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as JOSE wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; tolerates missing padding."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JWTError("not base64url") from exc


def _padding(alg: str) -> padding.AsymmetricPadding:
    if alg == "RS256":
        return padding.PKCS1v15()
    if alg == "PS256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    raise JWTError(f"unsupported alg {alg!r}")


def encode(
    claims: dict[str, Any], key: rsa.RSAPrivateKey, header: dict[str, Any] | None = None
) -> str:
    """Sign ``claims`` as a compact JWS (``alg`` defaults to RS256)."""
    head = {"typ": "JWT", "alg": "RS256", **(header or {})}
    signing_input = (
        b64url_encode(json.dumps(head, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    )
    sig = key.sign(signing_input.encode("ascii"), _padding(head["alg"]), hashes.SHA256())
    return signing_input + "." + b64url_encode(sig)


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of ``token`` without checking anything but its shape."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("a JWS has three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JWTError("header or claims are not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("header and claims must be JSON objects")
    return header, claims


def verify(token: str, key: rsa.RSAPublicKey) -> dict[str, Any]:
    """Check the signature with ``key`` and return the claims."""
    header, claims = unverified(token)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise JWTError(f"unsupported alg {alg!r}")
    signing_input, _, sig = token.rpartition(".")
    try:
        key.verify(
            b64url_decode(sig), signing_input.encode("ascii"), _padding(alg), hashes.SHA256()
        )
    except InvalidSignature as exc:
        raise JWTError("signature does not verify") from exc
    return claims


def jwk(
    key: rsa.RSAPublicKey,
    kid: str,
    cert_der: bytes | None = None,
    issuer: str | None = None,
) -> dict[str, Any]:
    """The public half of ``key`` as a JWKS entry.

    With ``cert_der`` the entry carries the signing certificate (``x5c``, standard
    base64 DER) and its SHA-1 thumbprint (``x5t``), as Entra ID's keys do; ``issuer``
    is the ``issuer`` member Entra's v2.0 key sets add.
    """
    numbers = key.public_numbers()

    def _int(value: int) -> str:
        return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    entry: dict[str, Any] = {
        "kty": "RSA",
        "use": "sig",
        "kid": kid,
        "x5t": kid,
        "n": _int(numbers.n),
        "e": _int(numbers.e),
    }
    if cert_der is not None:
        entry["x5t"] = thumbprint(cert_der)
        entry["x5c"] = [base64.b64encode(cert_der).decode("ascii")]
    if issuer is not None:
        entry["issuer"] = issuer
    return entry


def thumbprint(cert_der: bytes) -> str:
    """``x5t``: the base64url SHA-1 of a certificate's DER (Entra's ``kid`` too)."""
    return b64url_encode(hashlib.sha1(cert_der).digest())  # noqa: S324 - a thumbprint
