"""Where a :class:`~requests_ppauth.credentials.WorkloadIdentity` gets its assertion: a
token file, a GitHub Actions job's OIDC endpoint, or an Azure Pipelines job's.

Each is a callable msal asks for a fresh assertion on every token request (msal's
``client_assertion`` may be a callable), so a CI token that lives ten minutes is never
reused after the access token it bought (an hour) runs out.

The two endpoints speak what azure-identity's ``AzurePipelinesCredential`` and
GitHub's ``@actions/core`` ``getIDToken`` speak. Their request tokens
(``ACTIONS_ID_TOKEN_REQUEST_TOKEN``, ``SYSTEM_ACCESSTOKEN``) are secrets: they go only to
the endpoint named beside them, only over HTTPS, and no error names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from requests_ppauth._http import IdentityHttpClient
from requests_ppauth.credentials import WorkloadIdentity
from requests_ppauth.errors import (
    AzurePipelinesTokenError,
    ConfigurationError,
    GitHubActionsTokenError,
    OidcTokenError,
)

__all__ = [
    "EXCHANGE_AUDIENCE",
    "AzurePipelinesTokenError",
    "GitHubActionsTokenError",
    "OidcTokenError",
    "assertion_source",
    "file_assertion",
    "github_assertion",
    "pipelines_assertion",
]

EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
# what azure-identity's AzurePipelinesCredential sends
PIPELINES_API_VERSION = "7.1"
# a CI endpoint is asked this many times in all when it drops or answers 429/5xx
OIDC_ATTEMPTS = 3
OIDC_RETRY_AFTER_CAP = 10.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
PIPELINES_TOKEN_MAPPING = "env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)"  # noqa: S105


def assertion_source(cred: WorkloadIdentity, http: IdentityHttpClient) -> Callable[[], str]:
    """The callable for ``cred``'s provider (file, GitHub Actions or Azure Pipelines).
    ``http`` is the provider's identity client: the CI endpoints get the CA bundle,
    proxy and timeouts the token requests get."""
    if cred.provider == "file":
        return file_assertion(cred)
    if cred.provider == "azure_pipelines":
        return pipelines_assertion(cred, http)
    return github_assertion(cred, http)


def file_assertion(cred: WorkloadIdentity) -> Callable[[], str]:
    """The token file, read every time (Kubernetes rotates it in place)."""
    path = Path(cred.token_file).expanduser()

    def read() -> str:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the federated token file {path} ({exc.strerror}): check "
                "AZURE_FEDERATED_TOKEN_FILE / the profile's federated_token_file"
            ) from None
        if not token:
            raise ConfigurationError(f"the federated token file {path} is empty")
        return token

    return read


def github_assertion(cred: WorkloadIdentity, http: IdentityHttpClient) -> Callable[[], str]:
    """The job's OIDC token for ``cred.audience``, fetched every time."""
    audience = cred.audience or EXCHANGE_AUDIENCE
    sep = "&" if "?" in cred.token_url else "?"
    endpoint = _Endpoint(
        "GitHub Actions",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        GitHubActionsTokenError,
        "is the job's permissions: id-token: write set?",
        "GET",
        f"{cred.token_url}{sep}audience={quote(audience, safe=':/')}",
        cred.request_token,
    )
    fix = "check ACTIONS_ID_TOKEN_REQUEST_TOKEN and the job's permissions: id-token: write"

    def fetch() -> str:
        resp = endpoint.call(http)
        if resp.status_code != 200:
            raise GitHubActionsTokenError(
                f"{endpoint.where} answered HTTP {resp.status_code}: {fix}"
            )
        return endpoint.token_field(resp, "value")

    return fetch


def pipelines_assertion(cred: WorkloadIdentity, http: IdentityHttpClient) -> Callable[[], str]:
    """The pipeline's OIDC token for the service connection, fetched every time: a
    ``POST`` to ``SYSTEM_OIDCREQUESTURI`` authenticated by ``SYSTEM_ACCESSTOKEN``."""
    sep = "&" if "?" in cred.token_url else "?"
    endpoint = _Endpoint(
        "Azure Pipelines",
        "SYSTEM_OIDCREQUESTURI",
        AzurePipelinesTokenError,
        "is this step running in the pipeline's job?",
        "POST",
        f"{cred.token_url}{sep}api-version={PIPELINES_API_VERSION}"
        f"&serviceConnectionId={quote(cred.service_connection_id, safe='')}",
        cred.request_token,
    )
    where = endpoint.where

    def fetch() -> str:
        resp = endpoint.call(http)
        status = resp.status_code
        # Azure DevOps answers a token it does not know with 401, or with 203 and its
        # sign-in page; a redirect to that page is the same answer
        if status in (401, 403, 203) or 300 <= status < 400:
            raise AzurePipelinesTokenError(
                f"{where} refused SYSTEM_ACCESSTOKEN (HTTP {status}): map the job's token "
                f"into the step ({PIPELINES_TOKEN_MAPPING}){_trace(resp)}"
            )
        if status in (400, 404):
            raise AzurePipelinesTokenError(
                f"{where} answered HTTP {status} for service connection "
                f"{cred.service_connection_id!r} ({_devops_message(resp)}): check "
                "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID (or the profile's "
                "service_connection_id) and that the pipeline may use that connection"
                f"{_trace(resp)}"
            )
        if status != 200:
            raise AzurePipelinesTokenError(f"{where} answered HTTP {status}{_trace(resp)}")
        return endpoint.token_field(resp, "oidcToken")

    return fetch


# -- shared -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Endpoint:
    """One CI system's OIDC endpoint and how to speak of it in errors."""

    system: str
    var: str
    error: type[OidcTokenError]
    unreachable_hint: str
    method: str
    url: str
    request_token: str = field(repr=False)

    def __post_init__(self) -> None:
        """The request token is a bearer secret: never in clear, never to a relative URL."""
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            shown = urlunsplit(parts._replace(query=""))
            raise self.error(
                f"{self.var} must be an https:// URL (its request token is a secret), not {shown!r}"
            )

    @property
    def where(self) -> str:
        return f"the {self.system} OIDC endpoint in {self.var}"

    def call(self, http: IdentityHttpClient) -> Any:
        """The endpoint's answer, through the identity traffic's client (its CA bundle,
        proxy and timeouts; no netrc, no redirects). A dropped connection or a
        429/5xx is asked again, ``OIDC_ATTEMPTS`` times in all, as azure-identity and
        ``@actions/core`` do: a job must not fail on one blip of its CI system."""
        import requests

        headers = {"Authorization": f"Bearer {self.request_token}"}
        if self.method == "POST":
            headers["Content-Type"] = "application/json"
        send = http.post if self.method == "POST" else http.get
        for attempt in range(1, OIDC_ATTEMPTS + 1):
            last = attempt == OIDC_ATTEMPTS
            try:
                resp = send(self.url, headers=headers)
            except requests.exceptions.SSLError as exc:  # a setting to fix: no retry
                raise self.error(
                    f"cannot reach {self.where}: TLS failed ({type(exc).__name__}): check "
                    "PPAUTH_CA_BUNDLE"
                ) from None
            except requests.RequestException as exc:
                if last:
                    raise self.error(
                        f"cannot reach {self.where} ({type(exc).__name__}, {attempt} "
                        f"attempts): {self.unreachable_hint}"
                    ) from None
                time.sleep(_delay(attempt, None))
                continue
            if resp.status_code not in RETRY_STATUSES or last:
                return resp
            time.sleep(_delay(attempt, resp.headers.get("Retry-After")))
        raise AssertionError("unreachable")  # pragma: no cover

    def token_field(self, resp: Any, key: str) -> str:
        value = _json_field(resp, key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{self.where} answered no JSON with a {key}")
        return value.strip()


def _delay(attempt: int, retry_after: str | None) -> float:
    """Retry-After when the endpoint names one (capped), else 0.5 s doubling."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), OIDC_RETRY_AFTER_CAP)
    return 0.5 * float(2 ** (attempt - 1))


def _json_field(resp: Any, key: str) -> Any:
    """``key`` of the response's JSON object; None when the body is no JSON object."""
    try:
        return resp.json().get(key)
    except (ValueError, AttributeError):
        return None


def _devops_message(resp: Any) -> str:
    """Azure DevOps' own ``message`` (it names no secret), cut short."""
    message = _json_field(resp, "message")
    return str(message)[:200] if message else "no message"


def _trace(resp: Any) -> str:
    """The ids Azure DevOps support asks for (``x-vss-e2eid``, ``x-msedge-ref``)."""
    ids = [f"{h}: {resp.headers[h]}" for h in ("x-vss-e2eid", "x-msedge-ref") if h in resp.headers]
    return f" [{', '.join(ids)}]" if ids else ""
