"""The ``github_actions`` source: a GitHub Actions job's OIDC token, with no setup.

Asked after ``env`` and ``file`` and the plugins (priority 80), so a secret,
certificate or token file you configured wins. It answers when the job has
``permissions: id-token: write`` (GitHub then sets ``ACTIONS_ID_TOKEN_REQUEST_URL``
and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``) and the app is named by ``PPAUTH_CLIENT_ID`` +
``PPAUTH_TENANT_ID``, else ``AZURE_CLIENT_ID`` + ``AZURE_TENANT_ID``, else the
profile's ``client_id`` + ``tenant_id``, as ``pac auth create --githubFederated`` and
azure-identity do. The token is fetched for audience ``api://AzureADTokenExchange``
(``PPAUTH_OIDC_AUDIENCE`` or the profile's ``oidc_audience`` change it, for a
federated credential registered with another audience) on every token request.
"""

from __future__ import annotations

from collections.abc import Callable

from requests_ppauth.credentials import Credential, WorkloadIdentity
from requests_ppauth.errors import SourceError
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import CredentialSource, SourceRequest
from requests_ppauth.sources._federated import app_ids, setting

URL_VAR = "ACTIONS_ID_TOKEN_REQUEST_URL"
TOKEN_VAR = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 (a name, not a secret)
AUDIENCE_VAR = "PPAUTH_OIDC_AUDIENCE"


class GitHubActionsSource:
    """See the module docstring."""

    name = "github_actions"
    priority = 80

    def credential(self, request: SourceRequest) -> Credential | None:
        """Workload identity federation from the job's OIDC endpoint."""
        env = request.environ
        if not env.get(URL_VAR, "").strip():
            request.note(f"not a GitHub Actions job with id-token: write ({URL_VAR} is not set)")
            return None
        if not env.get(TOKEN_VAR, "").strip():
            raise SourceError(
                self.name,
                f"{URL_VAR} is set but {TOKEN_VAR} is not: GitHub sets both for a job with "
                "permissions: id-token: write",
            )
        ids = app_ids(request, ("PPAUTH_", "AZURE_"))
        if ids is None:
            request.note(
                f"{URL_VAR} is set but no client id: set PPAUTH_CLIENT_ID or AZURE_CLIENT_ID "
                "(and the tenant id), or client_id in the profile"
            )
            return None
        if not ids.tenant_id:
            raise SourceError(
                self.name, f"{URL_VAR} and {ids.client_from} are set but {ids.tenant_from} is not"
            )
        audience, _ = setting(request, (AUDIENCE_VAR,), "oidc_audience")
        return WorkloadIdentity(
            tenant_id=ids.tenant_id,
            client_id=ids.client_id,
            authority_host=ids.authority_host,
            token_url=env[URL_VAR].strip(),
            request_token=env[TOKEN_VAR].strip(),
            audience=audience,
        )


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register :class:`GitHubActionsSource`."""
    register(GitHubActionsSource())
