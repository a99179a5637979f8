"""Azure Pipelines federation with no setup: in an AzureCLI@2 step on a workload
identity service connection (with ``SYSTEM_ACCESSTOKEN`` mapped in), the
``azure_pipelines`` source fetches the job's OIDC token from the emulator's Azure DevOps
endpoint and Entra ID exchanges it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from requests_ppauth import (
    SourceError,
    TokenAcquisitionError,
    explain_sources,
)
from requests_ppauth.credentials import InvalidCredentialError, WorkloadIdentity
from requests_ppauth.flows import AzurePipelinesTokenError, OidcTokenError
from requests_ppauth.plugins import reset_plugins
from requests_ppauth.testing import Emulator
from tests._ci import APPS_SCOPE, BAP_PATH, api_auth, get_envs, ppauth


def enable_pipelines(ppauth_env) -> None:
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*,managed,github")  # conftest blocks it too
    reset_plugins()


@pytest.fixture
def step(ppauth_emulator, ppauth_env) -> tuple[Emulator, Any, dict[str, str]]:
    """An AzureCLI@2 step: the pipeline's variables, the connection's app, nothing else."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="ado-connection")
    variables = emu.azure_pipelines_env(app=app)
    enable_pipelines(ppauth_env)
    ppauth_env.set(
        **variables, AZURE_AUTHORITY_HOST=emu.authority_host, PPAUTH_CA_BUNDLE=emu.ca_bundle
    )
    emu.reset_counts()
    return emu, app, variables


def test_a_pipeline_step_gets_a_token_with_no_setup(step):
    emu, app, variables = step
    auth = api_auth(emu)

    assert get_envs(emu, auth).status_code == 200
    cred = auth.provider.credential
    assert isinstance(cred, WorkloadIdentity) and cred.source == "azure_pipelines"
    assert cred.client_id == app.client_id and cred.provider == "azure_pipelines"
    assert variables["SYSTEM_ACCESSTOKEN"] not in repr(cred)
    (oidc,) = emu.requests("pipelines_oidc")
    assert oidc.method == "POST"
    assert oidc.authorization == f"Bearer {variables['SYSTEM_ACCESSTOKEN']}"
    assert (
        oidc.extra["service_connection_id"]
        == (variables["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"])
    )
    assert oidc.status == 200  # the emulator answers 400 without api-version
    (grant,) = emu.requests("token")
    assert grant.grant_type == "client_credentials" and grant.extra["client_auth"] == "federated"
    assert grant.client_id == app.client_id


def test_a_second_token_request_fetches_a_fresh_oidc_token(step):
    emu, _, _ = step
    auth = api_auth(emu, cache=False)
    assert get_envs(emu, auth).status_code == 200
    auth.provider.get("https://api.powerplatform.com/.default")

    assert emu.count("pipelines_oidc") == 2 and emu.count("token") == 2


def test_a_second_process_reuses_the_cached_token(step):
    emu, _, _ = step
    assert get_envs(emu, api_auth(emu)).status_code == 200
    code = (
        "import requests\n"
        "from requests_ppauth import PowerPlatformAuth\n"
        f"auth = PowerPlatformAuth(hosts={{{emu.api_url.split('//')[1]!r}: {APPS_SCOPE!r}}})\n"
        f"r = requests.get({emu.api_url + BAP_PATH!r}, auth=auth, verify={emu.ca_bundle!r})\n"
        "print(r.status_code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert proc.stdout.strip() == "200", proc.stderr
    assert emu.count("pipelines_oidc") == 1 and emu.count("token") == 1


def test_explain_sources_shows_azure_pipelines(step):
    emu, _, variables = step
    report = explain_sources()

    assert report.answered_by == "azure_pipelines"
    rows = {o.name: o for o in report.outcomes}
    assert "SYSTEM_OIDCREQUESTURI" not in rows["env"].reason  # env saw no variable of its own
    assert variables["SYSTEM_ACCESSTOKEN"] not in repr(report)
    assert emu.count("pipelines_oidc") == 0  # explaining fetches nothing


def test_ppauth_sources_names_the_answer_and_hides_the_access_token(step):
    _, _, variables = step
    proc = ppauth("sources", "--json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answered_by"] == "azure_pipelines"
    rows = {r["name"]: r for r in data["sources"]}
    assert rows["azure_pipelines"]["credential"]["kind"] == "workload_identity"
    assert variables["SYSTEM_ACCESSTOKEN"] not in proc.stdout + proc.stderr


def test_ppauth_sources_says_why_it_declined_outside_a_pipeline(ppauth_env):
    enable_pipelines(ppauth_env)
    rows = {o.name: o for o in explain_sources().outcomes}

    assert "SYSTEM_OIDCREQUESTURI is not set" in rows["azure_pipelines"].reason


def test_a_pipeline_without_a_service_connection_declines_with_a_reason(step, ppauth_env):
    ppauth_env.set(AZURESUBSCRIPTION_SERVICE_CONNECTION_ID=None)
    rows = {o.name: o for o in explain_sources().outcomes}

    assert "no service connection" in rows["azure_pipelines"].reason
    assert rows["azure_pipelines"].outcome != "answered"


def test_a_secret_wins(step, ppauth_env):
    emu, _, _ = step
    s = emu.sample
    ppauth_env.set(
        AZURE_CLIENT_ID=s.client_id,
        AZURE_TENANT_ID=s.tenant_id,
        AZURE_CLIENT_SECRET=s.client_secret,
    )

    assert explain_sources().answered_by == "env"
    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert emu.count("pipelines_oidc") == 0


def test_azure_ids_alone_are_left_to_the_pipeline(step, ppauth_env):
    """``AZURE_CLIENT_ID`` + ``AZURE_TENANT_ID`` without a secret, in a pipeline step: env
    defers (as for GitHub) and the ids name the app (AZURESUBSCRIPTION_ ones unset)."""
    emu, app, _ = step
    ppauth_env.set(
        AZURESUBSCRIPTION_CLIENT_ID=None,
        AZURESUBSCRIPTION_TENANT_ID=None,
        AZURE_CLIENT_ID=app.client_id,
        AZURE_TENANT_ID=app.tenant_id,
    )
    report = explain_sources()

    assert report.answered_by == "azure_pipelines"
    assert "azure_pipelines" in {o.name: o for o in report.outcomes}["env"].reason
    assert get_envs(emu, api_auth(emu)).status_code == 200


def test_the_profile_names_the_connection_and_the_app(ppauth_emulator, ppauth_env):
    """A pipeline step that is not AzureCLI@2 (a plain script): the profile holds the
    connection's id and the app's ids, the pipeline gives the endpoint and the token."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=emu.pipelines_subject("pp-prod"), name="pp-prod")
    variables = emu.azure_pipelines_env("pp-prod")
    enable_pipelines(ppauth_env)
    ppauth_env.write_config(
        "[profiles.default]\n"
        f'client_id = "{app.client_id}"\ntenant_id = "{app.tenant_id}"\n'
        f'service_connection_id = "{variables["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]}"\n'
        f'authority_host = "{emu.authority_host}"\n'
    )
    ppauth_env.set(
        SYSTEM_OIDCREQUESTURI=variables["SYSTEM_OIDCREQUESTURI"],
        SYSTEM_ACCESSTOKEN=variables["SYSTEM_ACCESSTOKEN"],
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
    )
    emu.reset_counts()

    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert emu.count("pipelines_oidc") == 1 and emu.count("token") == 1


# -- half-set variables: typed errors that say what to set, before any request ------------
def test_an_unmapped_access_token_says_how_to_map_it(step, ppauth_env):
    emu, _, _ = step
    ppauth_env.set(SYSTEM_ACCESSTOKEN=None)
    with pytest.raises(SourceError) as info:
        get_envs(emu, api_auth(emu))

    message = str(info.value)
    assert "SYSTEM_ACCESSTOKEN" in message and "$(System.AccessToken)" in message
    assert emu.count("pipelines_oidc") == 0 and emu.count("token") == 0


def test_a_connection_without_a_client_id_names_the_variable(step, ppauth_env):
    emu, _, _ = step
    ppauth_env.set(AZURESUBSCRIPTION_CLIENT_ID=None, AZURESUBSCRIPTION_TENANT_ID=None)
    with pytest.raises(SourceError, match="AZURESUBSCRIPTION_CLIENT_ID"):
        get_envs(emu, api_auth(emu))
    assert emu.count("pipelines_oidc") == 0


def test_a_client_id_without_its_tenant_names_the_missing_variable(step, ppauth_env):
    emu, _, _ = step
    ppauth_env.set(AZURESUBSCRIPTION_TENANT_ID=None)
    with pytest.raises(SourceError, match="AZURESUBSCRIPTION_TENANT_ID is not"):
        get_envs(emu, api_auth(emu))


def test_ids_are_never_mixed_across_families(step, ppauth_env):
    """AZURESUBSCRIPTION_CLIENT_ID without its tenant, beside a profile naming another
    app and its tenant: one app's id is not paired with another's tenant."""
    emu, _, _ = step
    ppauth_env.write_config(
        '[profiles.default]\nclient_id = "other-app"\ntenant_id = "other.example"\n'
    )
    ppauth_env.set(AZURESUBSCRIPTION_TENANT_ID=None)
    with pytest.raises(SourceError, match="AZURESUBSCRIPTION_TENANT_ID is not"):
        get_envs(emu, api_auth(emu))


# -- what the endpoint and Entra ID refuse -------------------------------------------
def test_a_wrong_access_token_is_a_typed_error_without_the_token(step, ppauth_env):
    emu, _, _ = step
    wrong = "eyJ0eXAi.wrong-access-token.0123456789"
    ppauth_env.set(SYSTEM_ACCESSTOKEN=wrong)
    with pytest.raises(AzurePipelinesTokenError) as info:
        get_envs(emu, api_auth(emu))

    message = str(info.value)
    assert "401" in message and "SYSTEM_OIDCREQUESTURI" in message
    assert "$(System.AccessToken)" in message
    assert wrong not in message and wrong not in repr(info.value)
    assert isinstance(info.value, OidcTokenError)
    assert emu.count("pipelines_oidc") == 1 and emu.count("token") == 0


def test_an_unknown_service_connection_names_the_variable(step, ppauth_env):
    emu, _, _ = step
    ppauth_env.set(AZURESUBSCRIPTION_SERVICE_CONNECTION_ID="00000000-0000-0000-0000-000000000000")
    with pytest.raises(AzurePipelinesTokenError) as info:
        get_envs(emu, api_auth(emu))

    message = str(info.value)
    assert "404" in message and "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID" in message
    assert "was not found" in message  # Azure DevOps' own message is carried


def test_an_unreachable_endpoint_names_the_variable(step, ppauth_env):
    emu, _, variables = step
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ppauth_env.set(SYSTEM_OIDCREQUESTURI=f"https://127.0.0.1:{port}/org/_apis/oidctoken")
    with pytest.raises(AzurePipelinesTokenError) as info:
        get_envs(emu, api_auth(emu))

    assert "cannot reach" in str(info.value) and "SYSTEM_OIDCREQUESTURI" in str(info.value)
    assert variables["SYSTEM_ACCESSTOKEN"] not in str(info.value)
    assert emu.count("token") == 0


def test_a_plain_http_endpoint_is_refused_before_the_token_leaves(step, ppauth_env):
    """The access token is a bearer secret: it never travels in clear."""
    emu, _, _ = step
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        ppauth_env.set(SYSTEM_OIDCREQUESTURI=f"http://127.0.0.1:{port}/_apis/oidctoken")
        with pytest.raises(AzurePipelinesTokenError, match="must be an https:// URL"):
            get_envs(emu, api_auth(emu))
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing connected


def refused_exchange(emu: Emulator, ppauth_env, app: Any, **job: Any) -> TokenAcquisitionError:
    """What Entra ID answers for ``app`` in a pipeline job made with ``job``."""
    enable_pipelines(ppauth_env)
    ppauth_env.set(
        **emu.azure_pipelines_env(app=app, **job),
        AZURE_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
    )
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, api_auth(emu))
    return info.value


def test_an_untrusted_service_connection_is_70021(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=emu.pipelines_subject("prod"), name="prod-only")
    error = refused_exchange(emu, ppauth_env, app, service_connection="dev")  # the dev one

    assert error.code == 70021 and "sc://contoso/power-app/dev" in str(error)


def test_a_token_for_another_audience_is_70021(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="aud")
    error = refused_exchange(emu, ppauth_env, app, audience="api://SomethingElse")

    assert error.code == 70021 and "api://SomethingElse" in str(error)


def test_an_expired_oidc_token_is_700024(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=emu.pipelines_subject(), name="expired")

    assert refused_exchange(emu, ppauth_env, app, lifetime=-3600).code == 700024


def test_a_workload_identity_takes_one_token_origin():
    with pytest.raises(InvalidCredentialError, match="either token_file or token_url"):
        WorkloadIdentity(tenant_id="contoso.example", client_id="app-1")
    with pytest.raises(InvalidCredentialError, match="request_token"):
        WorkloadIdentity(
            tenant_id="contoso.example", client_id="app-1", token_url="https://x.example/t"
        )
    with pytest.raises(InvalidCredentialError, match="audience"):
        WorkloadIdentity(
            tenant_id="contoso.example",
            client_id="app-1",
            token_url="https://x.example/t",
            request_token="t0ken",
            service_connection_id="sc",
            audience="api://x",
        )


# -- the endpoint's transport: retries, proxy, netrc ----------------------------------------
def test_a_blip_of_the_endpoint_is_asked_again(step):
    emu, _, _ = step
    emu.inject("pipelines_oidc", status=503, times=1)
    emu.inject("pipelines_oidc", drop=True, times=1)

    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert [r.status for r in emu.requests("pipelines_oidc")] == [503, 0, 200]
    assert emu.count("token") == 1


def test_an_endpoint_that_stays_down_is_asked_three_times_then_named(step):
    emu, _, _ = step
    emu.inject("pipelines_oidc", status=503, times=None)
    with pytest.raises(AzurePipelinesTokenError, match="HTTP 503"):
        get_envs(emu, api_auth(emu))

    assert emu.count("pipelines_oidc") == 3 and emu.count("token") == 0


def test_a_refused_access_token_is_not_asked_again(step, ppauth_env):
    emu, _, _ = step
    ppauth_env.set(SYSTEM_ACCESSTOKEN="eyJ0eXAi.not-this-job.0")
    with pytest.raises(AzurePipelinesTokenError):
        get_envs(emu, api_auth(emu))
    assert emu.count("pipelines_oidc") == 1


def test_the_endpoint_is_reached_through_the_https_proxy_in_a_tunnel(step, ppauth_env):
    """Behind a corporate proxy the pipeline's endpoint is reached as the token endpoint
    is: in a CONNECT tunnel, so the proxy never sees the access token."""
    from tests._proxy import Proxy

    emu, _, variables = step
    with Proxy() as proxy:
        ppauth_env.set(HTTPS_PROXY=proxy.url, https_proxy=None, NO_PROXY=None, no_proxy=None)
        assert get_envs(emu, api_auth(emu)).status_code == 200

        identity = emu.authority_host.removeprefix("https://")
        # one kept-alive tunnel carries discovery, the OIDC token and the Entra token
        assert proxy.tunnels[identity] >= 1
        assert proxy.forwarded == []
        assert variables["SYSTEM_ACCESSTOKEN"].encode() not in proxy.seen
    assert emu.count("pipelines_oidc") == 1


def test_a_netrc_entry_for_the_host_does_not_replace_the_access_token(step):
    """requests would put a ~/.netrc login for the host in the Authorization header,
    over the bearer access token; identity traffic reads no netrc."""
    emu, _, variables = step
    netrc = os.path.join(os.environ["HOME"], ".netrc")
    with open(netrc, "w", encoding="utf-8") as fh:
        fh.write("machine 127.0.0.1 login someone password netrc-password\n")
    os.chmod(netrc, 0o600)

    assert get_envs(emu, api_auth(emu)).status_code == 200
    (oidc,) = emu.requests("pipelines_oidc")
    assert oidc.authorization == f"Bearer {variables['SYSTEM_ACCESSTOKEN']}"
