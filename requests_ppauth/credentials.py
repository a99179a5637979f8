"""Credential values: immutable, and never showing a secret in ``repr``.

A source returns one of these; the token provider turns it into an msal app.
Which one decides the flow:

- :class:`ClientSecret` and :class:`ClientCertificate`: a service principal
  (confidential client, client credentials grant);
- :class:`UsernamePassword`: a user through ROPC (public client; cannot do MFA);
- :class:`DeviceCode`: a user signing in on another device (MFA works);
- :class:`InteractiveBrowser`: a user signing in in this machine's browser (MFA works);
- :class:`ManagedIdentity`: code running in Azure, no secret;
- :class:`WorkloadIdentity`: a federated token from another identity provider;
- :class:`AzureCoreCredential`: any azure-core ``TokenCredential`` (azure-identity's
  ``AzureCliCredential``, ``ClientSecretCredential``, ...), asked for tokens instead of
  msal; :func:`as_credential` wraps one given as ``PowerPlatformAuth(credential=...)``
  or returned by a source.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from requests_ppauth.errors import InvalidCredentialError, TokenAcquisitionError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

# The tenant ids Entra ID takes in an authority URL: a directory id, a verified domain
# of the tenant, or one of the multi-tenant names.
TENANT_NAMES = frozenset({"organizations", "common", "consumers"})
_GUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")  # RFC 1123
# URL-unreserved characters (RFC 3986): what an app id can hold without changing a URL,
# a query string or a form body it is put in. Entra ID's own ids are GUIDs.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,256}")
_TENANT_FIX = (
    "use the directory (tenant) id, a GUID like 11111111-2222-3333-4444-555555555555, or "
    "a domain of the tenant like contoso.onmicrosoft.com (or organizations, common, "
    "consumers)"
)
_CLIENT_FIX = (
    "use the app registration's Application (client) id, a GUID like "
    "11111111-2222-3333-4444-555555555555"
)


def tenant_id_problem(value: str) -> str | None:
    """Why ``value`` (surrounding whitespace aside) cannot be a tenant id, or ``None``.

    Checked before any URL is built: the tenant id is pasted into the authority's path
    (``https://login.microsoftonline.com/<tenant>/...``), so ``../../evil``, ``x?y#z``
    or ``@evil.example`` would send the request somewhere else. A domain is RFC 1123
    labels with at least one dot (every Entra ID tenant domain has one, e.g.
    ``contoso.onmicrosoft.com``) and a last label that is not a number (no IP
    addresses). The answer reads after the setting's name (``PPAUTH_TENANT_ID is not a
    tenant id (...): use ...``) and never repeats the value: a secret pasted into the
    wrong variable must not reach a log.
    """
    text = value.strip()
    if not text:
        return f"is empty: {_TENANT_FIX}"
    if text.lower() in TENANT_NAMES or _GUID.fullmatch(text):
        return None
    labels = text.split(".")
    if (
        len(text) <= 253
        and len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return None
    bad = _unusual(text, "-.")
    if bad:
        detail = f"it holds {bad}, which no tenant id does"
    elif len(labels) < 2:
        detail = "a single name: a tenant's domain has a dot"
    else:
        detail = "neither a GUID nor a domain name"
    return f"is not a tenant id ({detail}): {_TENANT_FIX}"


def client_id_problem(value: str) -> str | None:
    """Why ``value`` (surrounding whitespace aside) cannot be a client id, or ``None``.

    Entra ID's client ids are GUIDs, but test doubles and older tools use other
    names, so only what would alter a URL or form body (``/ ? # & = % @``, spaces,
    control characters), an overlong value and the empty string are refused. Like
    :func:`tenant_id_problem`, never repeats the value."""
    text = value.strip()
    if not text:
        return f"is empty: {_CLIENT_FIX}"
    if _CLIENT_ID.fullmatch(text):
        return None
    bad = _unusual(text, "-._~")
    detail = f"it holds {bad}, which no client id does" if bad else "over 256 characters"
    return f"is not an application (client) id ({detail}): {_CLIENT_FIX}"


def _unusual(text: str, punctuation: str) -> str:
    """The characters of ``text`` other than ASCII letters, digits and ``punctuation``,
    quoted, at most five: enough to find them, too few to give a secret away."""
    allowed = set(punctuation)
    bad = sorted({c for c in text if not (c.isascii() and c.isalnum()) and c not in allowed})
    return ", ".join(repr(c) for c in bad[:5]) + (" ..." if len(bad) > 5 else "")


def blank(value: str | None) -> bool:
    """Whether a secret is set but holds nothing but whitespace (``""`` included)."""
    return value is not None and not value.strip()


def _strip_line_end(value: str) -> str:
    # a password may begin or end with a space (Entra ID allows them), never with a line
    # break: that is what `echo pw > file`, a here-doc or a copied line adds
    return value.rstrip("\r\n")


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

    # whether the ids may be empty (a managed identity's may)
    _optional_ids: ClassVar[bool] = False

    def __post_init__(self) -> None:
        """Refuse ids that are not ids and blank secrets, whoever built the credential.

        Here rather than in each source, so a third-party source's credential and one
        passed as ``PowerPlatformAuth(credential=...)`` are checked too, before any URL
        is built from them. Runs once per credential: never on the request path.
        Surrounding whitespace of the ids (a copied line's newline) is dropped.
        """
        kind = type(self).__name__
        for name in ("tenant_id", "client_id"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidCredentialError(
                    f"the {name} of a {kind} credential must be a string, not "
                    f"{type(value).__name__}"
                )
            object.__setattr__(self, name, value.strip())
            if self._optional_ids and not value.strip():
                continue
            check = tenant_id_problem if name == "tenant_id" else client_id_problem
            why = check(value)
            if why:
                raise InvalidCredentialError(f"the {name} of a {kind} credential {why}")

    def _refuse_blank(self, name: str, value: object, fix: str) -> None:
        """Raise unless ``value`` is a string with something besides whitespace."""
        kind = type(self).__name__
        if not isinstance(value, str):
            raise InvalidCredentialError(
                f"the {name} of a {kind} credential must be a string, not "
                f"{type(value).__name__}: {fix}"
            )
        if blank(value):
            raise InvalidCredentialError(
                f"the {name} of a {kind} credential is empty or only whitespace: {fix}"
            )

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

    def __post_init__(self) -> None:
        """Also: surrounding whitespace of the secret is dropped (Entra ID's secrets
        never hold any: it is a copied line's newline), and a blank secret refused."""
        super().__post_init__()
        self._refuse_blank("secret", self.secret, "pass the client secret's Value")
        object.__setattr__(self, "secret", self.secret.strip())

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

    def __post_init__(self) -> None:
        """Also: a line break ending the password is dropped; a password of spaces only
        is refused (``""`` stays: some tools write "no password" so)."""
        super().__post_init__()
        if self.password:  # None and "" both mean none
            self._refuse_blank(
                "password", self.password, "pass the certificate's password, or None"
            )
            object.__setattr__(self, "password", _strip_line_end(self.password))

    @property
    def kind(self) -> str:
        return "certificate"


@dataclass(frozen=True)
class UsernamePassword(Credential):
    """A user's name and password, through a public client app (ROPC)."""

    username: str = ""
    password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        """Also: a line break ending the password is dropped (spaces are kept: Entra ID
        passwords may hold them), and a blank password refused."""
        super().__post_init__()
        self._refuse_blank("password", self.password, "pass the user's password")
        object.__setattr__(self, "password", _strip_line_end(self.password))

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
class InteractiveBrowser(Credential):
    """A person signs in in a browser on this machine (authorization code with PKCE,
    through msal's loopback listener), MFA and consent included: what ``pac auth
    create`` and azure-identity's ``InteractiveBrowserCredential`` do.

    Like :class:`DeviceCode`, the account and its refresh token go to the shared cache
    (``ppauth login`` once, then every process is silent), and ``username`` picks
    among several signed-in accounts (and is the sign-in page's login hint). A browser
    opens only where one can: a display (or ``BROWSER`` set) on Linux, any desktop on
    macOS and Windows; with none, a terminal gets a device code instead, and a batch
    job (no terminal) fails with ``interaction_required``, saying what to run.
    ``timeout`` bounds the wait for the browser (seconds); ``port`` fixes the loopback
    port (``None``: any free one, which Entra ID accepts for ``http://localhost``).
    """

    username: str | None = None
    timeout: float = 300.0
    port: int | None = None
    prompt: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return "interactive_browser"

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

    _optional_ids: ClassVar[bool] = True

    @property
    def kind(self) -> str:
        return "managed_identity"


@dataclass(frozen=True)
class WorkloadIdentity(Credential):
    """Workload identity federation: a token from another identity provider
    (Kubernetes, GitHub Actions, Azure Pipelines) is the client assertion.

    Where that token comes from, in this order:

    - ``token_file`` (Kubernetes' ``AZURE_FEDERATED_TOKEN_FILE``): read again for every
      token request, so a rotated token is picked up;
    - ``token_url`` with ``service_connection_id``: an Azure Pipelines job's
      ``SYSTEM_OIDCREQUESTURI``, asked with ``request_token`` (``SYSTEM_ACCESSTOKEN``);
    - ``token_url`` alone: GitHub Actions' ``ACTIONS_ID_TOKEN_REQUEST_URL``, asked with
      ``request_token`` (``ACTIONS_ID_TOKEN_REQUEST_TOKEN``) for ``audience``.

    A fetched token is fetched anew for every token request (it lives minutes, the
    access token an hour), as azure-identity does. ``request_token`` is a secret, kept
    out of the repr. ``audience`` empty means ``api://AzureADTokenExchange``, what
    Entra ID's federated credentials expect unless you changed it.
    """

    token_file: str = ""
    token_url: str = ""
    request_token: str = field(default="", repr=False)
    audience: str = ""
    service_connection_id: str = ""

    def __post_init__(self) -> None:
        """Also: exactly one place to get the token from."""
        super().__post_init__()
        if bool(self.token_file) == bool(self.token_url):
            raise InvalidCredentialError(
                "a WorkloadIdentity takes either token_file or token_url (with request_token)"
            )
        if self.token_url and not self.request_token.strip():
            raise InvalidCredentialError(
                "a WorkloadIdentity with token_url needs the request_token that endpoint demands"
            )
        if self.service_connection_id and self.audience:
            raise InvalidCredentialError(
                "an Azure Pipelines OIDC token's audience is set by Azure DevOps "
                "(api://AzureADTokenExchange): leave audience empty with service_connection_id"
            )

    @property
    def provider(self) -> str:
        """``file``, ``azure_pipelines`` or ``github_actions``: where the assertion comes from."""
        if self.token_file:
            return "file"
        return "azure_pipelines" if self.service_connection_id else "github_actions"

    @property
    def kind(self) -> str:
        return "workload_identity"


@runtime_checkable
class SupportsGetToken(Protocol):
    """What azure-core's ``TokenCredential`` protocol asks (structurally: this module
    does not import azure-core)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """An ``azure.core.credentials.AccessToken`` (``.token``, ``.expires_on``)."""
        ...


@dataclass(frozen=True)
class AzureCoreCredential(Credential):
    """Another library's azure-core ``TokenCredential``, asked for tokens instead of
    msal: ``PowerPlatformAuth(credential=AzureCliCredential())`` on a laptop after
    ``az login``. The requests auth still picks the scope per host and refuses hosts
    outside its allow-list; the provider still keeps the token in memory and in the
    shared cache, and makes one request per key across threads and processes.

    The shared cache keys its tokens on ``(tenant_id, client_id)``: :func:`as_credential`
    fills them from azure-identity's credentials that name an app (``_tenant_id``,
    ``_client_id``) and otherwise with the credential's type
    (``azure-core.AzureCliCredential``): every process of this user with that type
    shares its tokens. Pass the ids yourself when two credentials of one type are
    different identities (two ``az`` config directories, say).
    """

    credential: SupportsGetToken | None = field(default=None, repr=False, compare=False)

    _optional_ids: ClassVar[bool] = True

    def __post_init__(self) -> None:
        """Also: the wrapped object must have ``get_token``."""
        super().__post_init__()
        if not isinstance(self.credential, SupportsGetToken):
            raise InvalidCredentialError(
                "an AzureCoreCredential wraps an azure-core TokenCredential (an object with "
                f"get_token), not {type(self.credential).__name__}"
            )

    @property
    def kind(self) -> str:
        return "azure_core"

    def acquire(self, scope: str, claims: str | None = None) -> dict[str, Any]:
        """One token from the wrapped credential, as msal's result dict (``access_token``,
        ``expires_in``, ``refresh_on``), so the provider stores it like any other.
        Its ``ClientAuthenticationError`` becomes our :class:`TokenAcquisitionError`."""
        cred: Any = self.credential
        try:
            if hasattr(cred, "get_token_info"):
                options = {"claims": claims} if claims else {}
                token = cred.get_token_info(scope, options=options)
                refresh_on = getattr(token, "refresh_on", None)
            else:
                token = cred.get_token(scope, **({"claims": claims} if claims else {}))
                refresh_on = None
        except Exception as exc:
            from azure.core.exceptions import ClientAuthenticationError

            if not isinstance(exc, ClientAuthenticationError):
                raise
            raise TokenAcquisitionError(
                f"{type(cred).__name__} could not get a token for {scope}: "
                f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}",
                error="credential_unavailable",
                hint="see the credential's own message (e.g. run `az login` for "
                "AzureCliCredential)",
            ) from None
        result: dict[str, Any] = {
            "access_token": token.token,
            "expires_in": max(0.0, float(token.expires_on) - time.time()),
            "token_source": type(cred).__name__,
        }
        if refresh_on:
            result["refresh_on"] = float(refresh_on)
        return result


def as_credential(value: Credential | SupportsGetToken) -> Credential:
    """``value`` as one of this module's credentials: itself, or an azure-core
    ``TokenCredential`` wrapped in :class:`AzureCoreCredential` (keyed as it says)."""
    if isinstance(value, Credential):
        return value
    if not isinstance(value, SupportsGetToken):
        raise InvalidCredentialError(
            f"a credential is a requests_ppauth.credentials.Credential or an azure-core "
            f"TokenCredential (an object with get_token), not {type(value).__name__}"
        )
    tenant = getattr(value, "_tenant_id", None)
    client = getattr(value, "_client_id", None)
    return AzureCoreCredential(
        tenant_id=tenant if isinstance(tenant, str) else "",
        client_id=client if isinstance(client, str) else f"azure-core.{type(value).__name__}",
        credential=value,
        source="explicit",
    )
