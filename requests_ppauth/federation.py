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

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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
PIPELINES_TOKEN_MAPPING = "env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)"  # noqa: S105


def assertion_source(
    cred: WorkloadIdentity, verify: bool | str = True, timeout: float = 10.0
) -> Callable[[], str]:
    """The callable for ``cred``'s provider (file, GitHub Actions or Azure Pipelines)."""
    if cred.provider == "file":
        return file_assertion(cred)
    if cred.provider == "azure_pipelines":
        return pipelines_assertion(cred, verify, timeout)
    return github_assertion(cred, verify, timeout)


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


def github_assertion(
    cred: WorkloadIdentity, verify: bool | str = True, timeout: float = 10.0
) -> Callable[[], str]:
    """The job's OIDC token for ``cred.audience``, fetched every time."""
    var = "ACTIONS_ID_TOKEN_REQUEST_URL"
    _require_https(cred.token_url, var, GitHubActionsTokenError)
    audience = cred.audience or EXCHANGE_AUDIENCE
    sep = "&" if "?" in cred.token_url else "?"
    url = f"{cred.token_url}{sep}audience={quote(audience, safe=':/')}"
    fix = "check ACTIONS_ID_TOKEN_REQUEST_TOKEN and the job's permissions: id-token: write"

    def fetch() -> str:
        resp = _call(
            "GET",
            url,
            cred.request_token,
            verify,
            timeout,
            var,
            GitHubActionsTokenError,
            "GitHub Actions",
            "is the job's permissions: id-token: write set?",
        )
        if resp.status_code != 200:
            raise GitHubActionsTokenError(
                f"the GitHub Actions OIDC endpoint in {var} answered HTTP {resp.status_code}: {fix}"
            )
        return _token_field(
            resp, "value", f"the GitHub Actions OIDC endpoint in {var}", GitHubActionsTokenError
        )

    return fetch


def pipelines_assertion(
    cred: WorkloadIdentity, verify: bool | str = True, timeout: float = 10.0
) -> Callable[[], str]:
    """The pipeline's OIDC token for the service connection, fetched every time: a
    ``POST`` to ``SYSTEM_OIDCREQUESTURI`` authenticated by ``SYSTEM_ACCESSTOKEN``."""
    var = "SYSTEM_OIDCREQUESTURI"
    _require_https(cred.token_url, var, AzurePipelinesTokenError)
    sep = "&" if "?" in cred.token_url else "?"
    url = (
        f"{cred.token_url}{sep}api-version={PIPELINES_API_VERSION}"
        f"&serviceConnectionId={quote(cred.service_connection_id, safe='')}"
    )
    where = f"the Azure Pipelines OIDC endpoint in {var}"

    def fetch() -> str:
        resp = _call(
            "POST",
            url,
            cred.request_token,
            verify,
            timeout,
            var,
            AzurePipelinesTokenError,
            "Azure Pipelines",
            "is this step running in the pipeline's job?",
        )
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
        return _token_field(resp, "oidcToken", where, AzurePipelinesTokenError)

    return fetch


# -- shared -------------------------------------------------------------------------
def _require_https(url: str, var: str, error: type[OidcTokenError]) -> None:
    """The request token is a bearer secret: never in clear, never to a relative URL."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise error(f"{var} must be an https:// URL (its request token is a secret), not {url!r}")


def _call(
    method: str,
    url: str,
    request_token: str,
    verify: bool | str,
    timeout: float,
    var: str,
    error: type[OidcTokenError],
    system: str,
    hint: str,
) -> Any:
    import requests

    headers = {"Authorization": f"Bearer {request_token}"}
    if method == "POST":
        headers["Content-Type"] = "application/json"
    try:
        # no redirects: the bearer token is for this endpoint only
        return requests.request(
            method, url, headers=headers, verify=verify, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise error(
            f"cannot reach the {system} OIDC endpoint in {var} ({type(exc).__name__}): {hint}"
        ) from None


def _token_field(resp: Any, key: str, where: str, error: type[OidcTokenError]) -> str:
    try:
        value = resp.json().get(key)
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value.strip():
        raise error(f"{where} answered no JSON with a {key}")
    return value.strip()


def _devops_message(resp: Any) -> str:
    """Azure DevOps' own ``message`` (it names no secret), cut short."""
    try:
        message = resp.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message)[:200] if message else "no message"


def _trace(resp: Any) -> str:
    """The ids Azure DevOps support asks for (``x-vss-e2eid``, ``x-msedge-ref``)."""
    ids = [f"{h}: {resp.headers[h]}" for h in ("x-vss-e2eid", "x-msedge-ref") if h in resp.headers]
    return f" [{', '.join(ids)}]" if ids else ""
