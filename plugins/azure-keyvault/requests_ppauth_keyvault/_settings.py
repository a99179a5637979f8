"""``[profiles.<name>.keyvault]``: read and checked once per lookup, before any network.

The table says two things that must not be confused, so they live apart:

- *what to fetch* for the Power Platform credential, at the top of the table
  (``client_secret`` or ``certificate``, ``certificate_password``), read by the
  ``keyvault`` source;
- *how to open the vault*, in ``credential``: a name (``"managed_identity"``) or a
  table with ``type`` and that type's settings. A ``client_id`` next to a
  ``client_secret`` reference would otherwise read as one app's id and secret.

Plus ``hosts`` (allow-listed non-Azure vault hosts), ``cache_ttl`` (seconds a
secret is kept in memory), ``retries`` and ``timeout`` for the vault's HTTP traffic.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from requests_ppauth.errors import SecretReferenceError
from requests_ppauth.source_api import SourceRequest

from requests_ppauth_keyvault._references import HOSTS_VAR, hosts_from_env, parse_hosts

TABLE = "keyvault"
TTL_VAR = "PPAUTH_KEYVAULT_CACHE_TTL"
DEFAULT_TTL = 300.0  # seconds: a rotated secret is picked up within five minutes
DEFAULT_RETRIES = 3  # the SDK's 10, with its back-off, can block a lookup for minutes
DEFAULT_TIMEOUT = 30.0

SOURCE_KEYS = ("client_secret", "certificate", "certificate_password")
TABLE_KEYS = frozenset({*SOURCE_KEYS, "credential", "hosts", "cache_ttl", "retries", "timeout"})

# credential type -> the settings it takes (besides ``type``)
CREDENTIAL_TYPES: dict[str, frozenset[str]] = {
    "default": frozenset({"authority_host", "client_id"}),
    "client_secret": frozenset({"authority_host", "tenant_id", "client_id", "client_secret"}),
    "environment": frozenset({"authority_host"}),
    "managed_identity": frozenset({"client_id"}),
    "azure_cli": frozenset({"tenant_id"}),
}


@dataclass(frozen=True)
class CredentialSpec:
    """How to authenticate to the vault, as configured (secrets still unresolved).

    ``client_secret`` is the raw setting: a literal or a reference, resolved only
    when a new azure-identity credential is built.
    """

    type: str = "default"
    authority_host: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: Any = field(default=None, repr=False)

    def fingerprint(self) -> tuple[str, ...]:
        """A key that changes when any setting does, holding no secret (a digest of it)."""
        digest = (
            hashlib.sha256(repr(self.client_secret).encode()).hexdigest()
            if self.client_secret is not None
            else ""
        )
        return (
            self.type,
            self.authority_host or "",
            self.tenant_id or "",
            self.client_id or "",
            digest,
        )


@dataclass(frozen=True)
class VaultSettings:
    """Everything the resolver needs from a profile, validated."""

    where: str
    table: Mapping[str, Any] = field(repr=False)
    hosts: frozenset[str]
    credential: CredentialSpec
    cache_ttl: float
    retries: int
    timeout: float
    ca_bundle: str | bool
    profile_authority_host: str | None
    profile_tenant_id: str | None


def where(request: SourceRequest) -> str:
    """How a message names the table: ``[profiles.<name>.keyvault]``."""
    return f"[profiles.{request.profile}.{TABLE}]"


def table(request: SourceRequest) -> Mapping[str, Any]:
    """The profile's keyvault table (empty when absent); anything else is an error."""
    value = request.settings.get(TABLE, {}) if request.settings else {}
    if not isinstance(value, Mapping):
        raise SecretReferenceError(f"{where(request)} must be a table")
    return value


def allowed_hosts(request: SourceRequest, extra: frozenset[str] = frozenset()) -> frozenset[str]:
    """Allow-listed vault hosts: ``extra``, ``PPAUTH_KEYVAULT_HOSTS`` and the table's ``hosts``.

    Never raises: claiming must not fail on a malformed table (resolving reports it).
    """
    hosts = extra | hosts_from_env(request.environ.get(HOSTS_VAR))
    value = request.settings.get(TABLE) if request.settings else None
    if isinstance(value, Mapping) and isinstance(value.get("hosts"), list):
        hosts |= parse_hosts(h for h in value["hosts"] if isinstance(h, str))
    return hosts


def read(request: SourceRequest, extra_hosts: frozenset[str] = frozenset()) -> VaultSettings:
    """Validate the table; :class:`SecretReferenceError` names the setting and the fix."""
    kv = table(request)
    here = where(request)
    unknown = sorted(set(kv) - TABLE_KEYS)
    if unknown:
        hint = (
            f" (the vault credential's settings go in [profiles.{request.profile}."
            f'{TABLE}.credential], with type = "client_secret" etc.)'
            if set(unknown) & {"tenant_id", "client_id", "authority_host", "type"}
            else ""
        )
        raise SecretReferenceError(
            f"{here}: unknown key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(TABLE_KEYS))}{hint}"
        )
    hosts = kv.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise SecretReferenceError(f'{here}: hosts must be a list of "host[:port]" strings')
    ttl_setting: Any = kv.get("cache_ttl", request.environ.get(TTL_VAR, DEFAULT_TTL))
    ttl = _number(ttl_setting, "cache_ttl" if "cache_ttl" in kv else TTL_VAR, here)
    retries = kv.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise SecretReferenceError(f"{here}: retries must be a whole number from 0 to 10")
    timeout = _number(kv.get("timeout", DEFAULT_TIMEOUT), "timeout", here)
    if timeout <= 0:
        raise SecretReferenceError(f"{here}: timeout must be more than 0 seconds")
    ca_bundle = request.settings.get("ca_bundle") or request.environ.get("PPAUTH_CA_BUNDLE")
    return VaultSettings(
        where=here,
        table=kv,
        hosts=allowed_hosts(request, extra_hosts),
        credential=_credential(kv.get("credential", "default"), f"{here} credential"),
        cache_ttl=ttl,
        retries=retries,
        timeout=timeout,
        ca_bundle=str(ca_bundle) if ca_bundle else True,
        profile_authority_host=_opt_str(request.settings.get("authority_host")),
        profile_tenant_id=_opt_str(request.settings.get("tenant_id")),
    )


def _credential(value: Any, here: str) -> CredentialSpec:
    types = ", ".join(f'"{t}"' for t in CREDENTIAL_TYPES)
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping):
        raise SecretReferenceError(f"{here} must be one of {types}, or a table with type = ...")
    kind = value.get("type", "default")
    if kind not in CREDENTIAL_TYPES:
        raise SecretReferenceError(f"{here}: unknown type {kind!r}; use one of {types}")
    allowed = CREDENTIAL_TYPES[kind]
    unknown = sorted(set(value) - allowed - {"type"})
    if unknown:
        raise SecretReferenceError(
            f"{here}: {', '.join(unknown)} do(es) not apply to type {kind!r}, which takes "
            f"{', '.join(sorted(allowed)) or 'no settings'}"
        )
    for key in ("authority_host", "tenant_id", "client_id"):
        if key in value and not (isinstance(value[key], str) and value[key]):
            raise SecretReferenceError(f"{here}: {key} must be a non-empty string")
    if kind == "client_secret":
        missing = [k for k in ("client_id", "client_secret") if not value.get(k)]
        if missing:
            raise SecretReferenceError(
                f'{here}: type "client_secret" needs {" and ".join(missing)} (the app that '
                "reads the vault; tenant_id defaults to the profile's)"
            )
    return CredentialSpec(
        type=kind,
        authority_host=value.get("authority_host"),
        tenant_id=value.get("tenant_id"),
        client_id=value.get("client_id"),
        client_secret=value.get("client_secret"),
    )


def _number(value: Any, name: str, here: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or math.isnan(number) or number < 0 or math.isinf(number):
        setting = name if name.isupper() else f"{here}: {name}"  # a variable, or a key
        raise SecretReferenceError(f"{setting} must be a number of seconds, 0 or more")
    return number


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
