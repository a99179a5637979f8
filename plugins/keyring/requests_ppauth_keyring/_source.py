"""The ``keyring`` credential source: the secret in the OS keyring, the rest in the profile.

A profile's identifiers are not secret and belong in the config file (``tenant_id``,
``client_id``, ``username``, ``certificate_path``, ``authority_host``); only its
secret lives in the keyring, under service ``requests-ppauth`` (or the profile's
``[profiles.<name>.keyring] service``) and username ``<profile>:<field>``:

==========================  ================================  =========================
keyring username            credential                        needs in the profile
==========================  ================================  =========================
``<profile>:client_secret``         ``ClientSecret``          tenant_id, client_id
``<profile>:certificate_password``  ``ClientCertificate``     + certificate_path
``<profile>:password``              ``UsernamePassword``      client_id, username
==========================  ================================  =========================

"Not mine vs mine but broken": nothing in the keyring for the profile is a pass (with
a note saying where it looked and how to store a secret); a secret in the keyring
whose profile lacks the identifiers to use it is a :class:`~requests_ppauth.SourceError`,
because the user plainly meant this source.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from requests_ppauth import (
    ClientCertificate,
    ClientSecret,
    Credential,
    SourceError,
    SourceRequest,
    UsernamePassword,
)
from requests_ppauth.source_api import read_certificate
from requests_ppauth_keyring import _store

SETTINGS_TABLE = "keyring"
SETTINGS_KEYS = frozenset({"service"})

# What each kind of secret needs from the profile to become a credential.
REQUIRED = {
    "client_secret": ("tenant_id", "client_id"),
    "certificate_password": ("tenant_id", "client_id", "certificate_path"),
    "password": ("client_id", "username"),
}


class KeyringSource:
    """Credentials whose secret is in the OS keyring (see the module docstring)."""

    name = "keyring"
    priority = 30

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} priority={self.priority}>"

    def credential(self, request: SourceRequest) -> Credential | None:
        """A credential for ``request.profile``, ``None`` to pass, or a ``SourceError``."""
        profile, settings = request.profile, request.settings
        service = self.service(request)
        # A profile that says it uses the keyring gets errors; any other profile gets a
        # note, so a missing or locked keyring does not hide the sources after this one.
        recognised = SETTINGS_TABLE in settings or self.name in (settings.get("sources") or ())
        found: dict[str, str] = {}
        try:
            for field in _store.FIELDS:
                value = _store.get(service, _store.profile_username(profile, field))
                if value is not None:
                    found[field] = value
        except _store.KeyringBackendError as exc:
            if recognised:
                raise SourceError(self.name, f"profile {profile!r}: {exc}") from None
            request.note(str(exc))
            return None
        if not found:
            option = "" if service == _store.SERVICE else f" --service {shlex.quote(service)}"
            request.note(
                f"no secret for profile {profile!r} in the keyring (service {service!r}, "
                f"usernames {profile}:client_secret / :certificate_password / :password); "
                f"store one with `{_store.CLI} set {shlex.quote(profile)} client_secret{option}`"
            )
            return None
        field = _pick(settings, found)
        missing = [key for key in REQUIRED[field] if not settings.get(key)]
        if missing:
            where = f"[profiles.{profile}] in {request.config_path or 'the config file'}"
            raise SourceError(
                self.name,
                f"the keyring holds the {field} of profile {profile!r} (service {service!r}), "
                f"but {where} has no {', '.join(missing)}: add "
                f"{'it' if len(missing) == 1 else 'them'} to the profile (only the secret "
                "lives in the keyring)",
            )
        return self._build(request, field, found[field])

    def service(self, request: SourceRequest) -> str:
        """The keyring service for the profile: its ``[profiles.<name>.keyring] service``."""
        table: Any = request.settings.get(SETTINGS_TABLE, {})
        where = f"[profiles.{request.profile}.{SETTINGS_TABLE}]"
        if not isinstance(table, Mapping):
            raise SourceError(self.name, f'{where} must be a table (service = "...")')
        unknown = sorted(set(table) - SETTINGS_KEYS)
        if unknown:
            raise SourceError(
                self.name,
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(SETTINGS_KEYS))}",
            )
        service = table.get("service", _store.SERVICE)
        if not isinstance(service, str) or not service:
            raise SourceError(self.name, f"{where}: service must be a non-empty string")
        return service

    def _build(self, request: SourceRequest, field: str, secret: str) -> Credential:
        s = request.settings
        authority = s.get("authority_host") or None
        if field == "client_secret":
            return ClientSecret(
                tenant_id=s["tenant_id"],
                client_id=s["client_id"],
                authority_host=authority,
                secret=secret,
            )
        if field == "certificate_password":
            path = str(s["certificate_path"])
            return ClientCertificate(
                tenant_id=s["tenant_id"],
                client_id=s["client_id"],
                authority_host=authority,
                certificate=read_certificate(
                    self.name, path, f"certificate_path of [profiles.{request.profile}]"
                ),
                password=secret,
                path=path,
                send_certificate_chain=bool(s.get("send_certificate_chain", False)),
            )
        return UsernamePassword(
            tenant_id=s.get("tenant_id") or "organizations",
            client_id=s["client_id"],
            authority_host=authority,
            username=s["username"],
            password=secret,
        )


def _pick(settings: Mapping[str, Any], found: Mapping[str, str]) -> str:
    """Which stored secret to use: the one the profile's settings point at, if stored.

    A profile with ``certificate_path`` wants the certificate password, one with
    ``username`` the user's password; otherwise (or if that one is not stored) the
    first stored field in :data:`~requests_ppauth_keyring._store.FIELDS` order, whose
    missing settings then produce a precise error.
    """
    if settings.get("certificate_path"):
        wanted = "certificate_password"
    elif settings.get("username"):
        wanted = "password"
    else:
        wanted = "client_secret"
    if wanted in found:
        return wanted
    return next(field for field in _store.FIELDS if field in found)
