"""Clouds, their authority hosts, and which Power Platform host takes which scope.

Pure data and pure functions: no I/O, nothing imported lazily. The auth object
asks :func:`scope_for_host` once per host and remembers the answer.

Scopes of the v1 resources (Power Apps, Flow) carry a double slash on purpose:
their resource ids end in ``/`` and Entra ID takes everything before the *last*
``/`` of a scope as the resource, so ``https://service.powerapps.com//.default``
asks for the resource ``https://service.powerapps.com/``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from requests_ppauth.errors import ConfigurationError


class Cloud(NamedTuple):
    """One national cloud: where to sign in and which hosts are Power Platform's.

    A NamedTuple, not a dataclass: importing ``dataclasses`` (and ``inspect`` with it)
    would add a fifth to the cost of ``import requests_ppauth``."""

    name: str
    authority_host: str
    # exact host -> scope
    hosts: dict[str, str] = {}  # noqa: RUF012 - a NamedTuple default, never mutated
    # host suffix (".api.powerplatform.com") -> scope, for per-environment hosts
    suffixes: dict[str, str] = {}  # noqa: RUF012 - a NamedTuple default, never mutated
    # Dataverse organisation hosts: the scope is https://<org host>/.default
    dataverse: re.Pattern[str] = re.compile(r"(?!)")


def _dv(suffix: str) -> re.Pattern[str]:
    # org.crm.dynamics.com, org.crm4.dynamics.com, org.api.crm4.dynamics.com ...
    return re.compile(r"^([a-z0-9][a-z0-9-]*)\.(?:api\.)?(crm\d*)\.(" + re.escape(suffix) + ")$")


_PUBLIC_PP = "https://api.powerplatform.com/.default"
_PUBLIC_APPS = "https://service.powerapps.com//.default"
_PUBLIC_FLOW = "https://service.flow.microsoft.com//.default"

CLOUDS: dict[str, Cloud] = {
    "public": Cloud(
        "public",
        "https://login.microsoftonline.com",
        hosts={
            "api.powerplatform.com": _PUBLIC_PP,
            "api.bap.microsoft.com": _PUBLIC_APPS,
            "api.powerapps.com": _PUBLIC_APPS,
            "api.flow.microsoft.com": _PUBLIC_FLOW,
        },
        suffixes={".api.powerplatform.com": _PUBLIC_PP},
        dataverse=_dv("dynamics.com"),
    ),
    "gcc": Cloud(
        "gcc",
        "https://login.microsoftonline.com",
        hosts={
            "api.gov.powerplatform.microsoft.us": "https://api.gov.powerplatform.microsoft.us/.default",
            "gov.api.bap.microsoft.us": "https://gov.service.powerapps.us//.default",
            "gov.api.powerapps.us": "https://gov.service.powerapps.us//.default",
            "gov.api.flow.microsoft.us": "https://gov.service.flow.microsoft.us//.default",
        },
        suffixes={
            ".api.gov.powerplatform.microsoft.us": "https://api.gov.powerplatform.microsoft.us/.default"
        },
        dataverse=re.compile(r"^([a-z0-9][a-z0-9-]*)\.(?:api\.)?(crm9)\.(dynamics\.com)$"),
    ),
    "gcchigh": Cloud(
        "gcchigh",
        "https://login.microsoftonline.us",
        hosts={
            "api.high.powerplatform.microsoft.us": "https://api.high.powerplatform.microsoft.us/.default",
            "high.api.bap.microsoft.us": "https://high.service.powerapps.us//.default",
            "high.api.powerapps.us": "https://high.service.powerapps.us//.default",
            "high.api.flow.microsoft.us": "https://high.service.flow.microsoft.us//.default",
        },
        suffixes={
            ".api.high.powerplatform.microsoft.us": "https://api.high.powerplatform.microsoft.us/.default"
        },
        dataverse=_dv("microsoftdynamics.us"),
    ),
    "dod": Cloud(
        "dod",
        "https://login.microsoftonline.us",
        hosts={
            "api.appsplatform.us": "https://api.appsplatform.us/.default",
            "api.bap.appsplatform.us": "https://service.apps.appsplatform.us//.default",
            "api.powerapps.appsplatform.us": "https://service.apps.appsplatform.us//.default",
            "api.flow.appsplatform.us": "https://service.flow.appsplatform.us//.default",
        },
        suffixes={".api.appsplatform.us": "https://api.appsplatform.us/.default"},
        dataverse=_dv("appsplatform.us"),
    ),
    "china": Cloud(
        "china",
        "https://login.chinacloudapi.cn",
        hosts={
            "api.powerplatform.partner.microsoftonline.cn": "https://api.powerplatform.partner.microsoftonline.cn/.default",
            "api.bap.partner.microsoftonline.cn": "https://service.powerapps.cn//.default",
            "api.powerapps.cn": "https://service.powerapps.cn//.default",
            "api.powerautomate.cn": "https://service.powerautomate.cn//.default",
        },
        suffixes={
            ".api.powerplatform.partner.microsoftonline.cn": "https://api.powerplatform.partner.microsoftonline.cn/.default"
        },
        dataverse=_dv("dynamics.cn"),
    ),
}
CLOUD_ALIASES = {
    "azurecloud": "public",
    "usgov": "gcchigh",
    "usgovernment": "gcchigh",
    "gcc-high": "gcchigh",
    "gcc_high": "gcchigh",
    "azurechinacloud": "china",
    "mooncake": "china",
    "usgovdod": "dod",
}


def cloud_key(name: object) -> str:
    """The key in :data:`CLOUDS` that ``name`` stands for (aliases resolved), whether
    or not there is such a cloud."""
    key = str(name).strip().lower()
    return CLOUD_ALIASES.get(key, key)


def get_cloud(name: str) -> Cloud:
    """The cloud called ``name`` (case-insensitive; common aliases accepted).

    Raises :class:`~requests_ppauth.errors.ConfigurationError` (a ``ValueError``)
    naming every place a cloud is chosen: the caller may be any of them.
    """
    try:
        return CLOUDS[cloud_key(name)]
    except KeyError:
        raise ConfigurationError(
            f"unknown cloud {name!r}: set PowerPlatformAuth(cloud=...), --cloud or the "
            f"profile's cloud to one of {', '.join(CLOUDS)} (aliases: "
            f"{', '.join(sorted(CLOUD_ALIASES))})"
        ) from None


def scope_for_host(host: str, cloud: Cloud) -> str | None:
    """The ``.default`` scope a Power Platform ``host`` of ``cloud`` takes, or ``None``."""
    host = host.lower().rstrip(".")
    if host in cloud.hosts:
        return cloud.hosts[host]
    for suffix, scope in cloud.suffixes.items():
        if host.endswith(suffix):
            return scope
    match = cloud.dataverse.match(host)
    if match:
        org, crm, suffix = match.groups()
        return f"https://{org}.{crm}.{suffix}/.default"
    return None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: the only hosts plain http may carry a token to."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
