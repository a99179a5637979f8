"""The ``file`` source: a profile's credential in the TOML config file.

A plaintext secret (``"…"`` or ``"literal:…"``) is refused when
the file is readable by group or others (the error says ``chmod 600``); references
(``keyring:…``, Key Vault URLs, ``{ ref = "…" }``) are resolved through the registered
resolvers and allowed in any file.
"""

from __future__ import annotations

import stat
from collections.abc import Callable

from requests_ppauth._redacted import SecretDict
from requests_ppauth.config import SECRET_KEYS
from requests_ppauth.credentials import (
    ClientCertificate,
    ClientSecret,
    Credential,
    DeviceCode,
    InteractiveBrowser,
    UsernamePassword,
    WorkloadIdentity,
    blank,
)
from requests_ppauth.errors import SourceError, UnsafeFileError
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import CredentialSource, SourceRequest, literal_form
from requests_ppauth.sources._certfile import read_certificate


class FileSource:
    """Credentials from ``[profiles.<name>]`` in the config file."""

    name = "file"
    priority = 20

    def credential(self, request: SourceRequest) -> Credential | None:
        """See the module docstring."""
        s = request.settings
        where = f"[profiles.{request.profile}] in {request.config_path}"
        if not s:
            request.note(f"no [profiles.{request.profile}] in {request.config_path}")
            return None
        person = s.get("device_code") or s.get("interactive")  # = false is no credential
        if not person and not any(
            k in s
            for k in (
                "client_secret",
                "certificate_path",
                "username",
                "password",
                "federated_token_file",
            )
        ):
            request.note(
                f"{where} holds no secret, certificate, username, device_code, "
                "interactive or federated_token_file"
            )
            return None
        if person and not any(k in s for k in ("client_secret", "certificate_path", "password")):
            if s.get("device_code") and s.get("interactive"):
                raise SourceError(
                    self.name,
                    f"{where} says both device_code = true and interactive = true: keep one "
                    "(interactive signs in in a browser, and with a device code where none opens)",
                )
            key = "interactive" if s.get("interactive") else "device_code"
            if not s.get("client_id"):
                raise SourceError(self.name, f"{where}: {key} needs a client_id")
            if s.get("interactive"):
                return InteractiveBrowser(
                    tenant_id=s.get("tenant_id") or "organizations",
                    client_id=s["client_id"],
                    authority_host=s.get("authority_host"),
                    username=s.get("username"),
                )
            return DeviceCode(
                tenant_id=s.get("tenant_id") or "organizations",
                client_id=s["client_id"],
                authority_host=s.get("authority_host"),
                username=s.get("username"),
            )
        if "federated_token_file" in s:
            if not (s.get("client_id") and s.get("tenant_id")):
                raise SourceError(
                    self.name, f"{where}: federated_token_file needs client_id and tenant_id"
                )
            return WorkloadIdentity(
                tenant_id=s["tenant_id"],
                client_id=s["client_id"],
                authority_host=s.get("authority_host"),
                token_file=s["federated_token_file"],
            )
        # string secrets are resolved once here: a resolver (keyring, Key Vault) is not asked twice
        resolved = self._check_plaintext(request)

        def secret(key: str) -> str:
            value = resolved[key] if key in resolved else request.resolve(s[key], key)
            text = _text(value)
            # refused here, where the key and the profile can be named; an empty
            # certificate_password means "none", as an empty variable does for env
            if blank(text) and not (key == "certificate_password" and text == ""):
                reference = value is not s[key] and not literal_form(s[key])
                what = "refers to a secret that is" if reference else "is"
                raise SourceError(
                    self.name,
                    f"{where}: {key} {what} empty or only whitespace: put the secret's "
                    f"value there, or remove {key}",
                )
            return text

        client_id, tenant = s.get("client_id"), s.get("tenant_id")
        if not client_id:
            raise SourceError(self.name, f"{where} has a credential but no client_id")
        authority = s.get("authority_host")
        if "client_secret" in s or "certificate_path" in s:
            if not tenant:
                raise SourceError(self.name, f"{where} has a client credential but no tenant_id")
            if "client_secret" in s:
                return ClientSecret(
                    tenant_id=tenant,
                    client_id=client_id,
                    authority_host=authority,
                    secret=secret("client_secret"),
                )
            has_password = s.get("certificate_password") is not None  # read_certificate raises
            return ClientCertificate(
                tenant_id=tenant,
                client_id=client_id,
                authority_host=authority,
                certificate=read_certificate(
                    self.name,
                    s["certificate_path"],
                    f"certificate_path of {where}",
                    environ=request.environ,
                ),
                password=secret("certificate_password") if has_password else None,
                path=s["certificate_path"],
                send_certificate_chain=bool(s.get("send_certificate_chain", False)),
            )
        if s.get("username") and "password" not in s:
            # the password may live elsewhere (a keyring source asked after us)
            request.note(f"{where} names user {s['username']!r} but holds no password")
            return None
        if not s.get("username"):
            raise SourceError(self.name, f"{where}: a password needs a username")
        return UsernamePassword(
            tenant_id=tenant or "organizations",
            client_id=client_id,
            authority_host=authority,
            username=s["username"],
            password=secret("password"),
        )

    @staticmethod
    def _check_plaintext(request: SourceRequest) -> dict[str, object]:
        s = request.settings
        # by name only in a repr: this frame and the caller's raise (a loose file mode,
        # a half-set profile), and error reporters record their locals
        resolved = SecretDict(
            (k, request.resolve(s[k], k)) for k in sorted(SECRET_KEYS) if isinstance(s.get(k), str)
        )
        # literal:<secret> is plaintext too
        plaintext = [k for k, v in resolved.items() if v is s[k] or literal_form(s[k])]
        mode = request.settings_mode
        if plaintext and mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UnsafeFileError(
                f"{request.config_path} holds a plaintext {plaintext[0]} for profile "
                f"{request.profile!r} but is readable by others (mode "
                f"{stat.S_IMODE(mode):o}): run `chmod 600 {request.config_path}`, or store "
                "the secret in a keyring and write a reference (keyring:...)"
            )
        return resolved


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register :class:`FileSource`."""
    register(FileSource())
