"""GitHub Actions federation with no setup: the ``github_actions`` source fetches the
job's OIDC token from the emulator's GitHub endpoint and Entra ID exchanges it."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from requests_ppauth import PowerPlatformAuth, SourceError, TokenAcquisitionError, explain_sources
from requests_ppauth.credentials import WorkloadIdentity
from requests_ppauth.flows import GitHubActionsTokenError
from requests_ppauth.plugins import reset_plugins
from requests_ppauth.testing import Emulator
from tests._ci import APPS_SCOPE, api_auth, get_envs, ppauth

REPO = "contoso/power-app"
SUBJECT = f"repo:{REPO}:ref:refs/heads/main"


def start_job(emu: Emulator, ppauth_env, app: Any | None, **extra: str) -> dict[str, str]:
    """A job with id-token: write for ``REPO``; the app's ids in AZURE_* (none when
    ``app`` is None: a profile names it), ``extra`` variables besides."""
    variables = emu.github_actions_env(REPO)
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*,managed")  # conftest disables github too
    reset_plugins()
    ids = {"AZURE_CLIENT_ID": app.client_id, "AZURE_TENANT_ID": app.tenant_id} if app else {}
    ppauth_env.set(
        **variables,
        **ids,
        AZURE_AUTHORITY_HOST=emu.authority_host,
        PPAUTH_CA_BUNDLE=emu.ca_bundle,
        **extra,
    )
    emu.reset_counts()
    return variables


@pytest.fixture
def job(ppauth_emulator, ppauth_env) -> tuple[Emulator, Any, dict[str, str]]:
    """A job with id-token: write, the app's ids and nothing else."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=SUBJECT, name="gh-job")
    return emu, app, start_job(emu, ppauth_env, app)


def test_a_job_gets_a_token_with_no_setup(job):
    emu, _, variables = job
    auth = api_auth(emu)

    assert get_envs(emu, auth).status_code == 200
    cred = auth.provider.credential
    assert isinstance(cred, WorkloadIdentity) and cred.source == "github_actions"
    assert variables["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] not in repr(cred)
    (oidc,) = emu.requests("github_oidc")
    assert oidc.method == "GET"
    assert oidc.scope == "api://AzureADTokenExchange"  # the audience asked for
    assert oidc.authorization == f"Bearer {variables['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"
    (grant,) = emu.requests("token")
    assert grant.grant_type == "client_credentials" and grant.extra["client_auth"] == "federated"
    assert "client_assertion_type" in grant.form_fields
    assert emu.count("github_oidc") == 1 and emu.count("token") == 1


def test_explain_sources_shows_github_actions(job):
    emu, _, variables = job
    report = explain_sources()

    assert report.answered_by == "github_actions"
    rows = {o.name: o for o in report.outcomes}
    assert rows["env"].outcome != rows["github_actions"].outcome
    assert "github_actions" in rows["env"].reason
    assert variables["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] not in repr(report)
    assert emu.count("github_oidc") == 0  # explaining fetches nothing


def test_ppauth_sources_shows_github_actions(job):
    _, _, variables = job
    proc = ppauth("sources", "--json")

    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answered_by"] == "github_actions"
    assert variables["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] not in proc.stdout + proc.stderr


def test_a_secret_wins(job, ppauth_env):
    emu, _, _ = job
    sample = emu.sample
    ppauth_env.set(AZURE_CLIENT_ID=sample.client_id, AZURE_CLIENT_SECRET=sample.client_secret)

    assert explain_sources().answered_by == "env"
    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert emu.count("github_oidc") == 0


def test_a_wrong_request_token(job, ppauth_env):
    emu, _, _ = job
    wrong = "wrong-request-token-0123456789"
    ppauth_env.set(ACTIONS_ID_TOKEN_REQUEST_TOKEN=wrong)
    with pytest.raises(GitHubActionsTokenError) as info:
        get_envs(emu, api_auth(emu))

    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in str(info.value) and "401" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    assert emu.count("github_oidc") == 1 and emu.count("token") == 0


def test_an_unreachable_endpoint(job, ppauth_env):
    emu, _, variables = job
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ppauth_env.set(ACTIONS_ID_TOKEN_REQUEST_URL=f"https://127.0.0.1:{port}/token?api-version=2.0")
    with pytest.raises(GitHubActionsTokenError) as info:
        get_envs(emu, api_auth(emu))

    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in str(info.value)
    assert variables["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] not in str(info.value)
    assert emu.count("token") == 0


def test_an_untrusted_subject(job, ppauth_env):
    emu, _, _ = job
    ppauth_env.set(**emu.github_actions_env("mallory/fork"))
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, api_auth(emu))

    assert info.value.code == 70021 and "mallory/fork" in str(info.value)


def test_a_wrong_audience(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=SUBJECT, federated_audience="api://Other", name="gh-aud")
    start_job(emu, ppauth_env, app)
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, api_auth(emu))

    assert info.value.code == 70021 and "api://AzureADTokenExchange" in str(info.value)


def test_an_expired_token(job, ppauth_env):
    emu, _, _ = job
    ppauth_env.set(**emu.github_actions_env(REPO, lifetime=-3600))
    with pytest.raises(TokenAcquisitionError) as info:
        get_envs(emu, api_auth(emu))

    assert info.value.code == 700024


def test_the_audience_is_configurable_by_variable(ppauth_emulator, ppauth_env):
    """A federated credential registered with another audience (some clouds, some
    organisations' policy): PPAUTH_OIDC_AUDIENCE asks GitHub for that one."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=SUBJECT, federated_audience="api://Contoso", name="aud")
    start_job(emu, ppauth_env, app, PPAUTH_OIDC_AUDIENCE="api://Contoso")

    assert get_envs(emu, api_auth(emu)).status_code == 200
    (oidc,) = emu.requests("github_oidc")
    assert oidc.scope == "api://Contoso"


def test_the_profile_names_the_app_and_the_audience(ppauth_emulator, ppauth_env):
    """No AZURE_ variables at all: the profile holds the ids and the audience."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=SUBJECT, federated_audience="api://Contoso", name="prof")
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*,managed")
    reset_plugins()
    ppauth_env.write_config(
        "[profiles.default]\n"
        f'client_id = "{app.client_id}"\ntenant_id = "{app.tenant_id}"\n'
        f'authority_host = "{emu.authority_host}"\noidc_audience = "api://Contoso"\n'
    )
    ppauth_env.set(**emu.github_actions_env(REPO), PPAUTH_CA_BUNDLE=emu.ca_bundle)
    report = explain_sources()

    assert report.answered_by == "github_actions"
    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert emu.count("github_oidc") == 1 and emu.count("token") == 1


def test_a_named_profile_wins_over_the_variables(ppauth_emulator, ppauth_env):
    """``profile="ci"`` says which app: its ids beat AZURE_CLIENT_ID (another app)."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=SUBJECT, name="named")
    ppauth_env.write_config(
        f'[profiles.ci]\nclient_id = "{app.client_id}"\ntenant_id = "{app.tenant_id}"\n'
    )
    start_job(emu, ppauth_env, emu.sample)  # AZURE_CLIENT_ID: another app
    auth = PowerPlatformAuth(profile="ci", hosts={emu.api_url.split("//")[1]: APPS_SCOPE})

    assert get_envs(emu, auth).status_code == 200
    assert auth.provider.credential.client_id == app.client_id


def test_a_url_without_its_request_token_is_a_typed_error(job, ppauth_env):
    emu, _, _ = job
    ppauth_env.set(ACTIONS_ID_TOKEN_REQUEST_TOKEN=None)
    with pytest.raises(SourceError) as info:
        get_envs(emu, api_auth(emu))

    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN is not" in str(info.value)
    assert "id-token: write" in str(info.value)
    assert emu.count("github_oidc") == 0


def test_a_plain_http_endpoint_is_refused(job, ppauth_env):
    emu, _, _ = job
    ppauth_env.set(ACTIONS_ID_TOKEN_REQUEST_URL="http://127.0.0.1:9/token?api-version=2.0")
    with pytest.raises(GitHubActionsTokenError, match="must be an https:// URL"):
        get_envs(emu, api_auth(emu))
    assert emu.count("token") == 0


def test_a_bad_gateway_from_github_is_asked_again(job):
    emu, _, _ = job
    emu.inject("github_oidc", status=502, times=1)

    assert get_envs(emu, api_auth(emu)).status_code == 200
    assert [r.status for r in emu.requests("github_oidc")] == [502, 200]
