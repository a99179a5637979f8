"""The ``azure_pipelines`` source: an Azure Pipelines job's OIDC token for a
workload-identity service connection, as ``pac auth create --azureDevOpsFederated``
and azure-identity's ``AzurePipelinesCredential`` use it.

Asked right after ``github_actions`` (priority 81), so anything you configured wins.
It answers in a step that has:

- ``SYSTEM_OIDCREQUESTURI``: Azure DevOps sets it in every job;
- ``SYSTEM_ACCESSTOKEN``: a secret Azure DevOps never exposes by itself, so map it in
  the step (``env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)``);
- the service connection's id: ``AZURESUBSCRIPTION_SERVICE_CONNECTION_ID`` (an
  AzureCLI@2 or AzurePowerShell@5 step sets it), ``PPAUTH_SERVICE_CONNECTION_ID`` or the
  profile's ``service_connection_id``;
- the app's ids: ``AZURESUBSCRIPTION_CLIENT_ID`` + ``_TENANT_ID`` (the same steps set
  them), else ``PPAUTH_`` or ``AZURE_`` ones, else the profile's.

Without a service connection this source declines (a pipeline that authenticates some
other way); with one but no access token or ids, it raises, naming what to set.
"""

from __future__ import annotations

from collections.abc import Callable

from requests_ppauth.credentials import Credential, WorkloadIdentity
from requests_ppauth.errors import SourceError
from requests_ppauth.federation import PIPELINES_TOKEN_MAPPING
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import CredentialSource, SourceRequest
from requests_ppauth.sources._federated import app_ids, setting

URI_VAR = "SYSTEM_OIDCREQUESTURI"
TOKEN_VAR = "SYSTEM_ACCESSTOKEN"  # noqa: S105 (a name, not a secret)
CONNECTION_VARS = ("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "PPAUTH_SERVICE_CONNECTION_ID")


class AzurePipelinesSource:
    """See the module docstring."""

    name = "azure_pipelines"
    priority = 81

    def credential(self, request: SourceRequest) -> Credential | None:
        """Workload identity federation from the pipeline job's OIDC endpoint."""
        env = request.environ
        uri = env.get(URI_VAR, "").strip()
        if not uri:
            request.note(f"not an Azure Pipelines job ({URI_VAR} is not set)")
            return None
        connection, connection_from = setting(request, CONNECTION_VARS, "service_connection_id")
        if not connection:
            request.note(
                f"{URI_VAR} is set but no service connection: run the step as AzureCLI@2 on a "
                "workload identity service connection, or set PPAUTH_SERVICE_CONNECTION_ID "
                "or the profile's service_connection_id"
            )
            return None
        if not env.get(TOKEN_VAR, "").strip():
            raise SourceError(
                self.name,
                f"{URI_VAR} and {connection_from} are set but {TOKEN_VAR} is not: Azure "
                "DevOps keeps the job's token from steps unless mapped "
                f"({PIPELINES_TOKEN_MAPPING})",
            )
        ids = app_ids(request, ("AZURESUBSCRIPTION_", "PPAUTH_", "AZURE_"))
        if ids is None:
            raise SourceError(
                self.name,
                f"{URI_VAR} and {connection_from} are set but no client id: set "
                "AZURESUBSCRIPTION_CLIENT_ID (the service connection's app) and "
                "AZURESUBSCRIPTION_TENANT_ID, or client_id and tenant_id in the profile",
            )
        if not ids.tenant_id:
            raise SourceError(
                self.name, f"{URI_VAR} and {ids.client_from} are set but {ids.tenant_from} is not"
            )
        return WorkloadIdentity(
            tenant_id=ids.tenant_id,
            client_id=ids.client_id,
            authority_host=ids.authority_host,
            token_url=uri,
            request_token=env[TOKEN_VAR].strip(),
            service_connection_id=connection,
        )


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register :class:`AzurePipelinesSource`."""
    register(AzurePipelinesSource())
