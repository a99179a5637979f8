"""``requests_ppauth.PowerPlatformCredential``, the azure-core ``TokenCredential``: its
protocol, its scope and tenant rules, the cache it shares with ``PowerPlatformAuth``,
and azure-core's own ``BearerTokenCredentialPolicy`` over it, against the emulator."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo, SupportsTokenInfo, TokenCredential
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import HttpRequest, RequestsTransport

import requests_ppauth
from requests_ppauth import ClientSecret, PowerPlatformAuth, PowerPlatformCredential
from requests_ppauth.azure import MultipleResourcesError, TenantMismatchError, scope_for

APPS_SCOPE = "https://service.powerapps.com//.default"
ENVS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"


@pytest.fixture
def emu(ppauth_emulator, ppauth_env):
    """The emulator, with the env source pointing at its sample service principal and
    the file cache in the test's own directory."""
    ppauth_env.use_emulator(ppauth_emulator)
    return ppauth_emulator


def requests_auth(emu) -> PowerPlatformAuth:
    return PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: APPS_SCOPE})


def test_importing_the_package_loads_neither_azure_core_nor_msal():
    code = (
        "import requests_ppauth, sys\n"
        "assert 'azure.core' not in sys.modules and 'msal' not in sys.modules, sorted(\n"
        "    m for m in sys.modules if m.startswith(('azure', 'msal')))\n"
        "requests_ppauth.PowerPlatformCredential\n"
        "assert 'azure.core' in sys.modules and 'msal' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_it_is_the_protocols_azure_sdks_check_for(emu):
    cred = PowerPlatformCredential()
    assert isinstance(cred, TokenCredential)
    assert isinstance(cred, SupportsTokenInfo)
    assert emu.counts() == {}  # building it asks nobody


def test_get_token_and_get_token_info(emu):
    cred = PowerPlatformCredential()
    before = time.time()
    token = cred.get_token(APPS_SCOPE)
    assert type(token) is AccessToken
    assert token.token.startswith("eyJ") and isinstance(token.expires_on, int)
    assert before + 600 < token.expires_on < before + 2 * 3600
    info = cred.get_token_info(APPS_SCOPE)
    assert type(info) is AccessTokenInfo
    assert info.token == token.token and info.expires_on == token.expires_on
    assert info.token_type == "Bearer"
    assert info.refresh_on is not None and before < info.refresh_on < info.expires_on
    assert emu.count("token") == 1  # the second call was the provider's memory


def test_scopes_of_two_resources_are_refused_saying_why(emu):
    cred = PowerPlatformCredential()
    with pytest.raises(MultipleResourcesError, match="one resource at a time") as excinfo:
        cred.get_token(APPS_SCOPE, "https://vault.azure.net/.default")
    assert isinstance(excinfo.value, ValueError)  # what azure-identity raises for bad scopes
    with pytest.raises(ValueError, match="at least one scope"):
        cred.get_token()
    with pytest.raises(ValueError, match="only OpenID Connect scopes"):
        cred.get_token_info("openid", "offline_access")
    assert emu.counts() == {}


def test_scope_for_joins_one_resource_and_drops_oidc_scopes():
    assert scope_for(["https://x.crm.dynamics.com/.default", "openid"]) == (
        "https://x.crm.dynamics.com/.default"
    )
    assert scope_for(["https://graph.microsoft.com/User.Read", "Mail.Read"]) == (
        "https://graph.microsoft.com/User.Read Mail.Read"
    )
    assert scope_for([APPS_SCOPE, "https://service.powerapps.com/.default"]) == (
        f"{APPS_SCOPE} https://service.powerapps.com/.default"
    )


def test_another_tenant_is_refused_the_same_one_is_not(emu):
    cred = PowerPlatformCredential()
    with pytest.raises(TenantMismatchError, match="build a PowerPlatformCredential for"):
        cred.get_token(APPS_SCOPE, tenant_id="22222222-3333-4444-5555-666666666666")
    with pytest.raises(TenantMismatchError):
        cred.get_token_info(APPS_SCOPE, options={"tenant_id": "contoso.onmicrosoft.com"})
    assert emu.count("token") == 0
    cred.get_token(APPS_SCOPE, tenant_id=emu.sample.tenant_id.upper())
    assert emu.count("token") == 1


def test_a_token_of_the_requests_auth_is_a_cache_hit_for_the_credential(emu):
    session = requests.Session()
    session.auth = requests_auth(emu)
    assert session.get(emu.api_url + ENVS, verify=emu.ca_bundle, timeout=10).status_code == 200
    assert emu.count("token") == 1
    sent = session.auth.provider.tokens[APPS_SCOPE].token
    token = PowerPlatformCredential().get_token(APPS_SCOPE)  # a new object: the file cache
    assert emu.count("token") == 1
    assert token.token == sent


def test_a_token_of_the_credential_is_a_cache_hit_for_the_requests_auth(emu):
    token = PowerPlatformCredential().get_token(APPS_SCOPE)
    assert emu.count("token") == 1
    auth = requests_auth(emu)
    session = requests.Session()
    session.auth = auth
    assert session.get(emu.api_url + ENVS, verify=emu.ca_bundle, timeout=10).status_code == 200
    assert emu.count("token") == 1
    assert auth.provider.tokens[APPS_SCOPE].token == token.token


def test_auth_shares_one_provider_and_refuses_options_beside_it(emu):
    auth = requests_auth(emu)
    cred = PowerPlatformCredential(auth=auth)
    assert cred.auth is auth
    cred.get_token(APPS_SCOPE)
    assert APPS_SCOPE in auth.provider.tokens  # the same provider's memory
    with pytest.raises(ValueError, match="either auth= or"):
        PowerPlatformCredential(auth=auth, cloud="gcc")


def test_an_explicit_credential_and_no_secret_in_repr(ppauth_emulator):
    s = ppauth_emulator.sample
    cred = PowerPlatformCredential(
        credential=ClientSecret(
            tenant_id=s.tenant_id,
            client_id=s.client_id,
            secret=s.client_secret,
            authority_host=ppauth_emulator.authority_host,
        ),
        verify=ppauth_emulator.ca_bundle,
        cache=False,
    )
    token = cred.get_token(APPS_SCOPE)
    for text in (repr(cred), str(cred)):
        assert s.client_secret not in text and token.token not in text
    assert repr(cred) == "PowerPlatformCredential(profile=None, cloud=None)"
    with cred as same:
        assert same is cred


def pipeline(cred: Any, emu) -> Pipeline[Any, Any]:
    policy = BearerTokenCredentialPolicy(cred, APPS_SCOPE, enable_cae=True)
    return Pipeline(transport=RequestsTransport(connection_verify=emu.ca_bundle), policies=[policy])


def test_azure_core_bearer_policy_over_the_credential(emu):
    pipe = pipeline(PowerPlatformCredential(), emu)
    url = f"{emu.api_url}{ENVS}"
    for _ in range(3):
        assert pipe.run(HttpRequest("GET", url)).http_response.status_code == 200
    assert emu.count("token") == 1
    emu.revoke()  # a plain revocation (no claims): the policy sees the 401 as it is
    assert pipe.run(HttpRequest("GET", url)).http_response.status_code == 401


def test_azure_core_bearer_policy_answers_a_cae_challenge_through_the_credential(emu):
    cred = PowerPlatformCredential()
    pipe = pipeline(cred, emu)
    url = f"{emu.api_url}{ENVS}"
    assert pipe.run(HttpRequest("GET", url)).http_response.status_code == 200
    emu.revoke(claims_challenge=True)
    emu.reset_counts()
    assert pipe.run(HttpRequest("GET", url)).http_response.status_code == 200
    statuses = [r.status for r in emu.requests() if r.path.startswith("/providers/")]
    assert statuses == [401, 200]
    (rec,) = emu.requests("token")
    assert "claims" in rec.form_fields
    # the token asked for with the claims is the one stored: the next caller uses it
    again = PowerPlatformCredential().get_token(APPS_SCOPE)
    assert emu.count("token") == 1
    ok = requests.get(
        url, headers={"Authorization": f"Bearer {again.token}"}, verify=emu.ca_bundle, timeout=10
    )
    assert ok.status_code == 200


def test_get_token_with_claims_bypasses_the_cache(emu):
    cred = PowerPlatformCredential()
    first = cred.get_token(APPS_SCOPE)
    emu.revoke(claims_challenge=True)
    resp = requests.get(
        emu.api_url + ENVS,
        headers={"Authorization": f"Bearer {first.token}"},
        verify=emu.ca_bundle,
        timeout=10,
    )
    assert resp.status_code == 401
    import base64
    import re

    encoded = re.search(r'claims="([^"]+)"', resp.headers["WWW-Authenticate"])
    assert encoded
    claims = base64.b64decode(encoded[1]).decode()
    fresh = cred.get_token(APPS_SCOPE, claims=claims)
    assert fresh.token != first.token and emu.count("token") == 2
    assert cred.get_token(APPS_SCOPE).token == fresh.token  # stored as usual
    assert emu.count("token") == 2


# -- the other direction: an azure-core credential inside PowerPlatformAuth ---------------


def _delegates() -> bool:
    """Whether the provider asks an AzureCoreCredential for tokens (tokens.py) and
    PowerPlatformAuth wraps an azure-core credential given to it (auth.py)."""
    import requests_ppauth.auth
    import requests_ppauth.tokens

    return "AzureCoreCredential" in inspect.getsource(
        requests_ppauth.tokens
    ) and "as_credential" in inspect.getsource(requests_ppauth.auth)


delegating = pytest.mark.skipif(
    not _delegates(), reason="tokens.py/auth.py do not delegate to azure-core credentials yet"
)


def azure_identity(emu, secret: str | None = None) -> Any:
    from azure.identity import ClientSecretCredential

    s = emu.sample
    return ClientSecretCredential(
        s.tenant_id,
        s.client_id,
        secret or s.client_secret,
        **emu.client_settings("azure-identity"),
    )


def test_as_credential_wraps_an_azure_core_credential_keyed_on_its_app(ppauth_emulator):
    from azure.identity import AzureCliCredential

    from requests_ppauth.credentials import AzureCoreCredential, as_credential

    emu = ppauth_emulator
    wrapped = as_credential(azure_identity(emu))
    assert isinstance(wrapped, AzureCoreCredential) and wrapped.kind == "azure_core"
    assert (wrapped.tenant_id, wrapped.client_id) == (emu.sample.tenant_id, emu.sample.client_id)
    cli = as_credential(AzureCliCredential())
    assert (cli.tenant_id, cli.client_id) == ("", "azure-core.AzureCliCredential")
    assert emu.sample.client_secret not in repr(wrapped)
    explicit = ClientSecret(tenant_id=emu.sample.tenant_id, client_id="x", secret="y")
    assert as_credential(explicit) is explicit
    from requests_ppauth import InvalidCredentialError

    with pytest.raises(InvalidCredentialError, match="not str"):
        as_credential("a secret")  # type: ignore[arg-type]


def test_the_wrapped_credential_answers_as_msal_would(ppauth_emulator):
    from requests_ppauth.credentials import as_credential

    result = as_credential(azure_identity(ppauth_emulator)).acquire(APPS_SCOPE)  # type: ignore[attr-defined]
    assert result["access_token"].startswith("eyJ")
    assert 600 < result["expires_in"] <= 2 * 3600
    assert result["token_source"] == "ClientSecretCredential"
    assert ppauth_emulator.count("token") == 1


def test_a_refused_azure_core_credential_is_a_token_acquisition_error(ppauth_emulator):
    from requests_ppauth import TokenAcquisitionError
    from requests_ppauth.credentials import as_credential

    wrapped = as_credential(azure_identity(ppauth_emulator, secret="wrong-secret"))
    with pytest.raises(TokenAcquisitionError, match="ClientSecretCredential could not") as exc:
        wrapped.acquire(APPS_SCOPE)  # type: ignore[attr-defined]
    assert "wrong-secret" not in str(exc.value)


@delegating
def test_powerplatform_auth_over_azure_identity_is_host_scoped_and_allow_listed(
    ppauth_emulator, ppauth_env
):
    from requests_ppauth import HostNotAllowedError

    emu = ppauth_emulator
    hostport = emu.api_url.split("//")[1]
    session = requests.Session()
    session.auth = PowerPlatformAuth(credential=azure_identity(emu), hosts={hostport: APPS_SCOPE})
    for _ in range(3):
        assert session.get(emu.api_url + ENVS, verify=emu.ca_bundle, timeout=10).ok
    assert emu.count("token") == 1
    with pytest.raises(HostNotAllowedError):
        session.get("https://evil.example.com/steal")
    assert emu.count("token") == 1
    assert list(session.auth.provider.tokens) == [APPS_SCOPE]  # the host's scope, no other
    # another auth object over another azure-identity object: the shared file cache
    other = PowerPlatformAuth(credential=azure_identity(emu), hosts={hostport: APPS_SCOPE})
    assert requests.get(emu.api_url + ENVS, auth=other, verify=emu.ca_bundle, timeout=10).ok
    assert emu.count("token") == 1


@delegating
def test_our_credential_over_azure_identity_for_an_sdk(ppauth_emulator, ppauth_env):
    """Both directions at once: an azure-identity credential, through our provider and
    cache, handed to azure-core's pipeline as our credential."""
    emu = ppauth_emulator
    cred = PowerPlatformCredential(credential=azure_identity(emu))
    pipe = pipeline(cred, emu)
    for _ in range(2):
        assert pipe.run(HttpRequest("GET", f"{emu.api_url}{ENVS}")).http_response.status_code == 200
    assert emu.count("token") == 1


def _sources_may_return_one() -> bool:
    import requests_ppauth.plugins

    return _delegates() and "as_credential" in inspect.getsource(requests_ppauth.plugins)


class AzureSource:
    """A third-party source whose credential is azure-identity's."""

    name = "azure-identity-source"
    priority = 15

    def __init__(self, emu) -> None:
        self.emu = emu

    def credential(self, request):
        return azure_identity(self.emu)


class AzureSourcePlugin:
    def __init__(self, source: AzureSource) -> None:
        self.source = source

    @requests_ppauth.hookimpl
    def ppauth_register_sources(self, register):
        register(self.source)


@pytest.mark.skipif(
    not _sources_may_return_one(), reason="plugins.py does not wrap azure-core credentials yet"
)
def test_a_source_may_return_an_azure_core_credential(ppauth_emulator, ppauth_env):
    from requests_ppauth.credentials import AzureCoreCredential
    from requests_ppauth.plugins import get_plugins

    emu = ppauth_emulator
    get_plugins().register(AzureSourcePlugin(AzureSource(emu)), name="azure-source-plugin")
    hostport = emu.api_url.split("//")[1]
    auth = PowerPlatformAuth(sources=["azure-identity-source"], hosts={hostport: APPS_SCOPE})
    assert requests.get(emu.api_url + ENVS, auth=auth, verify=emu.ca_bundle, timeout=10).ok
    cred = auth.provider.credential
    assert isinstance(cred, AzureCoreCredential) and cred.source == "azure-identity-source"
    assert emu.count("token") == 1
