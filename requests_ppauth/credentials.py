"""Credential values: immutable, and never showing a secret in ``repr``.

A source returns one of these; the token provider turns it into an msal app.
Which one decides the flow:

- :class:`ClientSecret` and :class:`ClientCertificate`: a service principal
  (confidential client, client credentials grant);
- :class:`UsernamePassword`: a user through ROPC (public client; cannot do MFA);
- :class:`DeviceCode`: a user signing in on another device (MFA works);
- :class:`ManagedIdentity`: code running in Azure, no secret;
- :class:`WorkloadIdentity`: a federated token from another identity provider.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class DeviceCode(Credential):
    """A person signs in on another device (a browser, with MFA) through a public client.

    The account and its refresh token go to the shared cache, so after one sign-in
    (``ppauth login --device-code``) every process uses it silently. ``username``
    picks among several signed-in accounts. ``prompt`` receives the instruction to
    show ("To sign in, use a web browser to open ... and enter the code ..."); without
    one the instruction goes to stderr, and only when stderr is a terminal: a batch
    job never blocks waiting for a person, it fails saying how to sign in first.
    """

    username: str | None = None
    prompt: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return "device_code"

    @property
    def user(self) -> str | None:
        return self.username


@dataclass(frozen=True)
class ManagedIdentity(Credential):
    """An Azure managed identity: no secret at all, the platform vouches for the code.

    ``client_id`` selects a user-assigned identity (or ``object_id`` / ``resource_id``);
    all empty means the system-assigned one. ``tenant_id`` is unused (the identity's
    own tenant) and may be empty.
    """

    object_id: str | None = None
    resource_id: str | None = None

    @property
    def kind(self) -> str:
        return "managed_identity"


@dataclass(frozen=True)
class WorkloadIdentity(Credential):
    """Workload identity federation: a token from another identity provider
    (Kubernetes, GitHub Actions) in ``token_file`` is the client assertion.

    The file is read again for every token request, so a rotated token is picked up.
    """

    token_file: str = ""

    @property
    def kind(self) -> str:
        return "workload_identity"
