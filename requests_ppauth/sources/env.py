"""The ``env`` source: ``PPAUTH_*`` variables, else azure-identity's ``AZURE_*`` names.

Same meaning as azure-identity's EnvironmentCredential: tenant + client id with a
secret, a certificate path, or a username and password. The two families are
never mixed: if any ``PPAUTH_`` credential variable is set, only ``PPAUTH_``
names are read, so one app's id is never paired with another app's secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from requests_ppauth.credentials import (
    ClientCertificate,
    ClientSecret,
    Credential,
    UsernamePassword,
    WorkloadIdentity,
    blank,
    client_id_problem,
    tenant_id_problem,
)
from requests_ppauth.errors import SourceError
from requests_ppauth.hookspecs import hookimpl
from requests_ppauth.source_api import CredentialSource, SourceRequest, literal_form
from requests_ppauth.sources._certfile import read_certificate

FIELDS = (
    "TENANT_ID",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "CLIENT_CERTIFICATE_PATH",
    "CLIENT_CERTIFICATE_PASSWORD",
    "USERNAME",
    "PASSWORD",
    "CLIENT_SEND_CERTIFICATE_CHAIN",
    "FEDERATED_TOKEN_FILE",
)
SECRET_FIELDS = frozenset({"CLIENT_SECRET", "CLIENT_CERTIFICATE_PASSWORD", "PASSWORD"})
TRUE = {"1", "true", "yes", "on"}


class EnvSource:
    """Credentials from environment variables."""

    name = "env"
    priority = 10

    def credential(self, request: SourceRequest) -> Credential | None:
        """See the module docstring."""
        env = request.environ
        prefix = "PPAUTH_" if any(env.get("PPAUTH_" + f) for f in FIELDS) else "AZURE_"
        # secrets only as "set" markers: this frame raises on half-set variables, and
        # error reporters (pytest --showlocals, Sentry) record its locals
        values = {
            f: ("<set>" if f in SECRET_FIELDS and env.get(prefix + f) else env.get(prefix + f, ""))
            for f in FIELDS
        }
        if not any(values[f] for f in FIELDS):
            request.note("no PPAUTH_* or AZURE_* credential variables are set")
            return None
        p = prefix
        authority = env.get("PPAUTH_AUTHORITY_HOST") or env.get("AZURE_AUTHORITY_HOST") or None
        client_id, tenant = values["CLIENT_ID"], values["TENANT_ID"]
        secret, cert_path = values["CLIENT_SECRET"], values["CLIENT_CERTIFICATE_PATH"]
        username, password = values["USERNAME"], values["PASSWORD"]
        if not client_id:
            set_names = ", ".join(p + f for f in FIELDS if values[f])
            raise SourceError(self.name, f"{set_names} set but {p}CLIENT_ID is not")
        if (
            p == "AZURE_"
            and not any(values[f] for f in FIELDS if f not in ("CLIENT_ID", "TENANT_ID"))
            and _managed_identity_announced(env)
        ):
            # azure-identity's convention: on a host with a managed identity endpoint,
            # AZURE_CLIENT_ID alone picks a user-assigned identity (managed_identity source)
            request.note("AZURE_CLIENT_ID selects the managed identity announced by the host")
            return None
        ci = _federating_ci(env, request.settings)
        if ci and not any(values[f] for f in FIELDS if f not in ("CLIENT_ID", "TENANT_ID")):
            # a GitHub Actions job with id-token: write or an Azure Pipelines step on a
            # service connection: the ids alone are for that source, which fetches the
            # job's OIDC token
            request.note(f"{p}CLIENT_ID alone: the {ci} source federates the job")
            return None
        self._check_ids(p, client_id, tenant)
        if secret or cert_path:
            if not tenant:
                raise SourceError(
                    self.name,
                    f"{p}CLIENT_ID and {p}CLIENT_{'SECRET' if secret else 'CERTIFICATE_PATH'} "
                    f"are set but {p}TENANT_ID is not",
                )
            if secret:
                return ClientSecret(
                    tenant_id=tenant,
                    client_id=client_id,
                    authority_host=authority,
                    secret=self._secret(request, env[p + "CLIENT_SECRET"], f"{p}CLIENT_SECRET"),
                )
            password_value = values["CLIENT_CERTIFICATE_PASSWORD"]
            return ClientCertificate(
                tenant_id=tenant,
                client_id=client_id,
                authority_host=authority,
                certificate=read_certificate(
                    self.name, cert_path, f"{p}CLIENT_CERTIFICATE_PATH", environ=env
                ),
                password=self._secret(
                    request,
                    env[p + "CLIENT_CERTIFICATE_PASSWORD"],
                    f"{p}CLIENT_CERTIFICATE_PASSWORD",
                )
                if password_value
                else None,
                path=cert_path,
                send_certificate_chain=values["CLIENT_SEND_CERTIFICATE_CHAIN"].lower() in TRUE,
            )
        if values["FEDERATED_TOKEN_FILE"]:  # workload identity federation (Kubernetes, CI)
            if not tenant:
                raise SourceError(
                    self.name,
                    f"{p}FEDERATED_TOKEN_FILE and {p}CLIENT_ID are set but {p}TENANT_ID is not",
                )
            return WorkloadIdentity(
                tenant_id=tenant,
                client_id=client_id,
                authority_host=authority,
                token_file=values["FEDERATED_TOKEN_FILE"],
            )
        if username or password:
            missing = [p + n for n, v in (("USERNAME", username), ("PASSWORD", password)) if not v]
            if missing:
                raise SourceError(
                    self.name,
                    f"{p}USERNAME and {p}PASSWORD go together: {', '.join(missing)} is not set",
                )
            return UsernamePassword(
                tenant_id=tenant or "organizations",
                client_id=client_id,
                authority_host=authority,
                username=username,
                password=self._secret(request, env[p + "PASSWORD"], f"{p}PASSWORD"),
            )
        raise SourceError(
            self.name,
            f"{p}CLIENT_ID is set but none of {p}CLIENT_SECRET, {p}CLIENT_CERTIFICATE_PATH, "
            f"{p}FEDERATED_TOKEN_FILE or {p}USERNAME + {p}PASSWORD",
        )

    def _check_ids(self, p: str, client_id: str, tenant: str) -> None:
        """Refuse ids that are not ids, naming the variable, before any URL holds them
        (an unset tenant is the caller's to report, or defaults to organizations)."""
        problems = [(f"{p}CLIENT_ID", client_id_problem(client_id))]
        if tenant:
            problems.append((f"{p}TENANT_ID", tenant_id_problem(tenant)))
        for name, why in problems:
            if why:
                raise SourceError(self.name, f"{name} {why}")

    def _secret(self, request: SourceRequest, value: str, name: str) -> str:
        """The secret in variable ``name`` (or the one it references), refused when it
        is only whitespace: that is a templating slip, and sent to Entra ID it would
        only come back as a confusing "invalid client secret"."""
        resolved = request.resolve(value, name)
        reference = resolved is not value and not literal_form(value)
        secret = _text(resolved)
        if blank(secret):
            what = "refers to a secret that is" if reference else "is"
            raise SourceError(
                self.name,
                f"{name} {what} empty or only whitespace: set it to the secret's value, "
                "or unset it",
            )
        return secret


def _managed_identity_announced(env: Mapping[str, str]) -> bool:
    """Whether the host announces (or the user chose) a managed identity, as the
    ``managed_identity`` source sees it."""
    return bool(
        (env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER"))
        or env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
        or env.get("PPAUTH_MANAGED_IDENTITY")
    )


def _federating_ci(env: Mapping[str, str], settings: Mapping[str, object]) -> str | None:
    """The CI federation source that would take bare ids here, if any."""
    from requests_ppauth.sources import azure_pipelines, github

    if env.get(github.URL_VAR):
        return github.GitHubActionsSource.name
    if env.get(azure_pipelines.URI_VAR) and (
        any(env.get(v) for v in azure_pipelines.CONNECTION_VARS)
        or settings.get("service_connection_id")
    ):
        return azure_pipelines.AzurePipelinesSource.name
    return None


def _text(value: object) -> str:
    # a resolver may return bytes (SecretResolver.resolve): str(b"x") would be "b'x'"
    return value.decode() if isinstance(value, bytes) else str(value)


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register :class:`EnvSource`."""
    register(EnvSource())
