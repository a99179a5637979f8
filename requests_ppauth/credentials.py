"""Credential values: immutable, and never showing a secret in ``repr``.

A source returns one of these; the token provider turns it into an msal app.
Which one decides the flow:

- :class:`ClientSecret` and :class:`ClientCertificate`: a service principal
  (confidential client, client credentials grant);
- :class:`UsernamePassword`: a user through ROPC (public client; cannot do MFA).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class Credential:
    """What every credential has: whose it is and where to redeem it.

    ``source`` names the source that produced it, for error messages and
    ``ppauth sources``. ``authority_host`` is ``None`` when the profile's cloud
    should decide.
    """

    tenant_id: str
    client_id: str
    authority_host: str | None = None
    source: str = "explicit"

    @property
    def kind(self) -> str:
        """``secret``, ``certificate`` or ``password``."""
        raise NotImplementedError

    @property
    def user(self) -> str | None:
        """The user the token is for, or ``None`` for app-only tokens."""
        return None


@dataclass(frozen=True)
class ClientSecret(Credential):
    """A service principal's client secret (the secret's *Value*, not its ID)."""

    secret: str = field(default="", repr=False)

    @property
    def kind(self) -> str:
        return "secret"


@dataclass(frozen=True)
class ClientCertificate(Credential):
    """A service principal's certificate: PEM (key + certificate) or PKCS#12 bytes.

    ``send_certificate_chain`` sends the ``x5c`` header, for subject-name/issuer auth.
    """

    certificate: bytes = field(default=b"", repr=False)
    password: str | None = field(default=None, repr=False)
    path: str | None = None
    send_certificate_chain: bool = False

    @property
    def kind(self) -> str:
        return "certificate"


@dataclass(frozen=True)
class UsernamePassword(Credential):
    """A user's name and password, through a public client app (ROPC)."""

    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def kind(self) -> str:
        return "password"

    @property
    def user(self) -> str | None:
        return self.username
