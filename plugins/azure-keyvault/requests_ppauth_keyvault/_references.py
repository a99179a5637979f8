"""What a Key Vault reference looks like, and which ones this plugin may claim.

Pure string work, no Azure import: the core asks every resolver whether it claims
each ``https:`` value in a profile, so claiming must be cheap and must never say yes
to an ordinary URL (a password may well look like one).

A reference is ``https://<vault>.<suffix>/secrets/<name>[/<version>]``, where the
suffix is one of Key Vault's public or sovereign-cloud DNS suffixes. Any other
``https://host[:port]/secrets/...`` is claimed only when ``host[:port]`` is in an
allow-list: those are emulators and private endpoints, whose TLS names are not
Key Vault's, so the SDK's check that the 401 challenge names the vault's own
domain has to be switched off for them, and the allow-list is what makes that safe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

# DNS suffix of a cloud's vaults -> that cloud's Entra ID authority host. The
# authority is only a default, used when nothing in the profile names one.
VAULT_SUFFIXES: dict[str, str] = {
    "vault.azure.net": "https://login.microsoftonline.com",
    "vault.usgovcloudapi.net": "https://login.microsoftonline.us",
    "vault.azure.cn": "https://login.chinacloudapi.cn",
    "vault.microsoftazure.de": "https://login.microsoftonline.de",
}
HOSTS_VAR = "PPAUTH_KEYVAULT_HOSTS"

_VAULT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,22}[a-z0-9]$")  # Key Vault: 3-24 chars
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VERSION = re.compile(r"^[0-9A-Za-z]{1,64}$")
SHAPE = "https://<vault>.vault.azure.net/secrets/<name>[/<version>]"


class MalformedReferenceError(ValueError):
    """A string this plugin claims (a vault host) whose path is not a secret's."""


@dataclass(frozen=True)
class VaultReference:
    """A parsed reference: where the vault is and which secret (version) to read.

    ``hostport`` is ``host`` or ``host:port`` as an allow-list names it; ``suffix``
    is the Key Vault DNS suffix, ``None`` for an allow-listed host.
    """

    reference: str
    vault_url: str
    hostport: str
    name: str
    version: str | None
    suffix: str | None

    @property
    def azure(self) -> bool:
        """A real Key Vault host: the SDK checks the challenge names its domain."""
        return self.suffix is not None

    @property
    def authority_host(self) -> str | None:
        """The Entra ID host of the vault's cloud, or ``None`` off Azure."""
        return VAULT_SUFFIXES[self.suffix] if self.suffix else None

    def __str__(self) -> str:
        return self.reference


def azure_suffix(host: str) -> str | None:
    """The Key Vault DNS suffix ``host`` ends with, if any."""
    for suffix in VAULT_SUFFIXES:
        if host.endswith("." + suffix):
            return suffix
    return None


def normalize_host(entry: str) -> str | None:
    """``host`` or ``host:port``, lower-case, from an allow-list entry (URLs accepted)."""
    text = entry.strip()
    if not text:
        return None
    if "//" not in text:
        text = "//" + text
    try:
        parts = urlsplit(text)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:  # IPv6 literal: keep the brackets, as it is written in a URL
        host = f"[{host}]"
    return f"{host}:{port}" if port and port != 443 else host


def parse_hosts(values: Iterable[str]) -> frozenset[str]:
    """An allow-list from entries; empty and unparsable entries are dropped."""
    return frozenset(h for h in (normalize_host(v) for v in values) if h)


def hosts_from_env(value: str | None) -> frozenset[str]:
    """The allow-list in ``PPAUTH_KEYVAULT_HOSTS`` (comma-separated)."""
    return parse_hosts((value or "").split(","))


def _split(reference: str) -> tuple[SplitResult, str] | None:
    """The URL's parts and its ``host[:port]``, or ``None`` if it is no https URL."""
    if reference[:8].lower() != "https://":
        return None
    try:
        parts = urlsplit(reference)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return parts, (f"{host}:{port}" if port and port != 443 else host)


def claims(reference: str, allowed: frozenset[str]) -> bool:
    """Whether ``reference`` is ours: any URL on a vault host, or a secret URL on an allowed one.

    A URL on a real vault host is claimed even with a wrong path, so the user
    gets "not a secret reference" from this plugin rather than the URL used as a
    literal password.
    """
    split = _split(reference)
    if split is None:
        return False
    parts, hostport = split
    if azure_suffix(hostport.partition(":")[0]):
        return True
    return hostport in allowed and parts.path.startswith("/secrets/")


def parse(reference: str) -> VaultReference:
    """Parse a claimed reference; :class:`MalformedReferenceError` says what is wrong."""
    split = _split(reference)
    if split is None:
        raise MalformedReferenceError(f"{reference!r} is not an https URL; expected {SHAPE}")
    parts, hostport = split
    host = hostport.partition(":")[0] if not hostport.startswith("[") else hostport
    suffix = azure_suffix(host)
    if parts.username is not None or parts.password is not None:
        # never echo the URL: whatever sits before the @ may be a credential
        raise MalformedReferenceError(
            f"a Key Vault reference to {hostport} holds user info; expected {SHAPE}"
        )
    where = f"Key Vault reference {parts.scheme}://{hostport}{parts.path}"
    if suffix is not None and not _VAULT_NAME.match(host[: -len(suffix) - 1]):
        raise MalformedReferenceError(
            f"{where}: {host[: -len(suffix) - 1]!r} is not a vault name (3-24 letters, "
            "digits and hyphens)"
        )
    if parts.query or parts.fragment:
        raise MalformedReferenceError(f"{where}: remove the query or fragment; expected {SHAPE}")
    segments = parts.path.strip("/").split("/")
    if len(segments) not in (2, 3) or segments[0] != "secrets":
        hint = (
            ": a certificate's private key is in the secret of the same name, "
            ".../secrets/<certificate-name>"
            if segments[0] in ("certificates", "keys")
            else ""
        )
        raise MalformedReferenceError(f"{where} is not a secret; expected {SHAPE}{hint}")
    name, version = segments[1], segments[2] if len(segments) == 3 else None
    if not _SECRET_NAME.match(name):
        raise MalformedReferenceError(
            f"{where}: {name!r} is not a secret name (letters, digits and hyphens)"
        )
    if version is not None and not _VERSION.match(version):
        raise MalformedReferenceError(f"{where}: {version!r} is not a secret version id")
    return VaultReference(
        reference=reference,
        vault_url=f"https://{hostport}",
        hostport=hostport,
        name=name,
        version=version,
        suffix=suffix,
    )
