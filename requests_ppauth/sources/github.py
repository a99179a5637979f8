"""The ``github_actions`` source: a GitHub Actions job's OIDC token, with no setup.

Asked after ``env`` and ``file`` and the plugins (priority 80), so a secret,
certificate or token file you configured wins. It answers when the job has
``permissions: id-token: write`` (GitHub then sets ``ACTIONS_ID_TOKEN_REQUEST_URL``
and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``) and the app is named by ``PPAUTH_CLIENT_ID`` +
``PPAUTH_TENANT_ID`` (else ``AZURE_CLIENT_ID`` + ``AZURE_TENANT_ID``), as
``pac auth create --githubFederated`` and azure-identity do. The token is fetched
for audience ``api://AzureADTokenExchange`` on every token request.
"""

from __future__ import annotations

from collections.abc import Callable

from requests_ppauth.credentials import Credential, WorkloadIdentity
from requests_ppauth.errors import SourceError
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import CredentialSource, SourceRequest

URL_VAR = "ACTIONS_ID_TOKEN_REQUEST_URL"
TOKEN_VAR = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 (a name, not a secret)


class GitHubActionsSource:
    """See the module docstring."""

    name = "github_actions"
    priority = 80

    def credential(self, request: SourceRequest) -> Credential | None:
        """Workload identity federation from the job's OIDC endpoint."""
        env = request.environ
        if not (env.get(URL_VAR) and env.get(TOKEN_VAR)):
            request.note(f"not a GitHub Actions job with id-token: write ({URL_VAR} is not set)")
            return None
        prefix = "PPAUTH_" if env.get("PPAUTH_CLIENT_ID") else "AZURE_"
        client_id = env.get(prefix + "CLIENT_ID", "").strip()
        tenant = env.get(prefix + "TENANT_ID", "").strip()
        if not client_id:
            request.note(f"{URL_VAR} is set but neither PPAUTH_CLIENT_ID nor AZURE_CLIENT_ID")
            return None
        if not tenant:
            raise SourceError(
                self.name, f"{URL_VAR} and {prefix}CLIENT_ID are set but {prefix}TENANT_ID is not"
            )
        authority = env.get("PPAUTH_AUTHORITY_HOST") or env.get("AZURE_AUTHORITY_HOST") or None
        return WorkloadIdentity(
            tenant_id=tenant,
            client_id=client_id,
            authority_host=authority,
            token_url=env[URL_VAR].strip(),
            request_token=env[TOKEN_VAR].strip(),
        )


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register :class:`GitHubActionsSource`."""
    register(GitHubActionsSource())
