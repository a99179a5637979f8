"""The emulated Azure Resource Manager: the wire shapes with plain requests and
azure-identity tokens, then the real, unmodified azure-cli signing in to the emulator as
a custom cloud (``az cloud register``, ``az login --service-principal``,
``az account get-access-token``, ``az rest``).

The azure-cli tests run the ``az`` named by ``PPAUTH_TEST_AZ`` (or the one on PATH) and
skip when there is none: azure-cli is ~730 MB and is not a test extra.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from azure.identity import ClientSecretCredential

from requests_ppauth.testing import Emulator
from requests_ppauth.testing._jwt import unverified


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


def arm_token(emu: Emulator, scope: str = "https://management.core.windows.net//.default") -> str:
    s = emu.sample
    cred = ClientSecretCredential(
        s.tenant_id,
        s.client_id,
        s.client_secret,
        **emu.client_settings("azure-identity"),
    )
    return cred.get_token(scope).token


def arm_get(emu: Emulator, path: str, token: str | None = None, **query: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{emu.api_url}{path}", params=query, headers=headers, verify=emu.ca_bundle, timeout=10
    )


# -- /metadata/endpoints ------------------------------------------------------------------


def test_metadata_endpoints_2022_09_01_is_the_emulators_cloud(emu):
    resp = arm_get(emu, "/metadata/endpoints", **{"api-version": "2022-09-01"})

    assert resp.status_code == 200
    cloud = resp.json()
    assert cloud["authentication"] == {
        "loginEndpoint": emu.authority_host,
        "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
        "tenant": "common",
        "identityProvider": "AAD",
    }
    assert cloud["resourceManager"] == f"{emu.api_url}/"
    # the one suffix: az needs it for keyvault commands; it must never resolve
    assert cloud["suffixes"] == {"keyVaultDns": "vault.ppauth-emulator.invalid"}
    assert emu.count("arm-metadata") == 1
    assert emu.count("token") == 0  # anonymous, as on management.azure.com


def test_metadata_endpoints_older_versions_keep_their_shapes(emu):
    listed = arm_get(emu, "/metadata/endpoints", **{"api-version": "2019-05-01"}).json()
    legacy = arm_get(emu, "/metadata/endpoints", **{"api-version": "2015-01-01"}).json()

    assert isinstance(listed, list)
    assert listed[0]["resourceManager"] == f"{emu.api_url}/"
    assert set(legacy) == {"galleryEndpoint", "graphEndpoint", "portalEndpoint", "authentication"}
    assert legacy["authentication"]["loginEndpoint"] == f"{emu.authority_host}/"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({}, "MissingApiVersionParameter"),
        ({"api-version": "1999-01-01"}, "InvalidApiVersionParameter"),
    ],
)
def test_metadata_api_version_is_validated(emu, query, code):
    resp = arm_get(emu, "/metadata/endpoints", **query)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == code


# -- /subscriptions, /tenants ------------------------------------------------------------------


def test_subscriptions_are_empty_until_a_test_adds_one(emu):
    token = arm_token(emu)

    empty = arm_get(emu, "/subscriptions", token, **{"api-version": "2022-12-01"}).json()
    sid = emu.arm.add_subscription("Contoso Dev")
    listed = arm_get(emu, "/subscriptions", token, **{"api-version": "2022-12-01"}).json()

    assert empty == {"value": [], "count": {"type": "Total", "value": 0}}
    [item] = listed["value"]
    assert item["id"] == f"/subscriptions/{sid}"
    assert item["subscriptionId"] == sid
    assert item["tenantId"] == emu.sample.tenant_id
    assert item["displayName"] == "Contoso Dev"
    assert item["state"] == "Enabled"
    assert listed["count"] == {"type": "Total", "value": 1}
    assert emu.count("arm") == 2


def test_one_subscription_and_an_unknown_one(emu):
    token = arm_token(emu)
    sid = emu.arm.add_subscription("One")

    one = arm_get(emu, f"/subscriptions/{sid}", token, **{"api-version": "2022-12-01"})
    missing = arm_get(
        emu, "/subscriptions/00000000-0000-0000-0000-000000000000", token, api_version="x"
    )
    unknown = arm_get(
        emu,
        "/subscriptions/00000000-0000-0000-0000-000000000000",
        token,
        **{"api-version": "2022-12-01"},
    )

    assert one.status_code == 200
    assert one.json()["displayName"] == "One"
    assert missing.status_code == 400  # api_version is not api-version
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "SubscriptionNotFound"


def test_a_principal_sees_its_tenants_subscriptions_or_those_it_was_given(emu):
    other = emu.add_tenant("fabrikam.example")
    mine = emu.arm.add_subscription("Mine")
    emu.arm.add_subscription("Elsewhere", tenant_id=other.id)
    emu.arm.add_subscription("Someone else's", principals=["11111111-2222-3333-4444-555555555555"])
    emu.arm.add_subscription("Granted", principals=[emu.sample.client_id])

    listed = arm_get(emu, "/subscriptions", arm_token(emu), **{"api-version": "2022-12-01"})

    names = {item["displayName"]: item["subscriptionId"] for item in listed.json()["value"]}
    assert set(names) == {"Mine", "Granted"}
    assert names["Mine"] == mine


def test_subscriptions_over_the_admin_api(emu):
    sid = emu.admin_call("add_subscription", {"display_name": "From admin"})
    assert [s["subscriptionId"] for s in emu.admin_call("subscriptions", {})] == [sid]


def test_tenants_lists_the_tokens_home_tenant(emu):
    body = arm_get(emu, "/tenants", arm_token(emu), **{"api-version": "2022-12-01"}).json()

    [tenant] = body["value"]
    assert tenant["tenantId"] == emu.sample.tenant_id
    assert tenant["defaultDomain"] == emu.sample.tenant_domain
    assert tenant["id"] == f"/tenants/{emu.sample.tenant_id}"
    assert tenant["tenantCategory"] == "Home"


def test_both_arm_audiences_are_accepted(emu):
    emu.arm.add_subscription("S")
    for scope in (
        "https://management.core.windows.net//.default",
        "https://management.azure.com/.default",
    ):
        resp = arm_get(
            emu, "/subscriptions", arm_token(emu, scope), **{"api-version": "2022-12-01"}
        )
        assert resp.status_code == 200, scope
        assert len(resp.json()["value"]) == 1


def test_no_token_is_authentication_failed_with_a_challenge(emu):
    resp = arm_get(emu, "/subscriptions", **{"api-version": "2022-12-01"})

    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "AuthenticationFailed"
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer authorization_uri="{emu.authority_host}/"')
    assert 'error="invalid_token"' in challenge


def test_a_token_for_another_resource_is_the_wrong_audience(emu):
    vault_token = arm_token(emu, "https://vault.azure.net/.default")
    assert unverified(vault_token)[1]["aud"].startswith("https://vault.azure.net")

    resp = arm_get(emu, "/subscriptions", vault_token, **{"api-version": "2022-12-01"})

    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_a_garbled_token_is_invalid(emu):
    resp = arm_get(emu, "/subscriptions", "not.a.jwt", **{"api-version": "2022-12-01"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_an_unknown_resources_api_version_lists_the_supported_ones(emu):
    resp = arm_get(emu, "/subscriptions", arm_token(emu), **{"api-version": "2099-01-01"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "InvalidApiVersionParameter"
    assert error["message"].startswith("The api-version '2099-01-01' is invalid.")
    assert "2022-12-01" in error["message"]


def test_arm_leaves_the_business_app_platform_paths_alone(emu):
    resp = arm_get(
        emu,
        "/providers/Microsoft.BusinessAppPlatform/environments",
        **{"api-version": "2020-10-01"},
    )
    assert emu.count("arm") == 0
    assert emu.count("arm-metadata") == 0
    assert resp.status_code != 200  # no token: whatever BAP answers, it is not ARM's


# -- the real azure-cli ------------------------------------------------------------------------

AZ = os.environ.get("PPAUTH_TEST_AZ") or shutil.which("az")
needs_az = pytest.mark.skipif(
    AZ is None,
    reason="azure-cli is not installed (pip install azure-cli into any venv and set "
    "PPAUTH_TEST_AZ to its az, or put az on PATH)",
)


class AzureCli:
    """``az`` with its own config dir, trusting only the emulator's CA."""

    def __init__(self, emu: Emulator, config_dir: Path) -> None:
        assert AZ is not None
        self.emu = emu
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "ARM_"))}
        self.env.update(
            AZURE_CONFIG_DIR=str(config_dir),
            # az's requests (msal's and azure-core's) trust the bundle these variables name
            REQUESTS_CA_BUNDLE=emu.ca_bundle,
            CURL_CA_BUNDLE=emu.ca_bundle,
            # msal would ask login.microsoftonline.com about the emulator's authority
            AZURE_CORE_INSTANCE_DISCOVERY="false",
            AZURE_CORE_COLLECT_TELEMETRY="false",
            AZURE_CORE_SURVEY_MESSAGE="false",
            AZURE_CORE_NO_COLOR="true",
            AZURE_CORE_OUTPUT="json",
        )

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert AZ is not None
        done = subprocess.run(
            [AZ, *args, "--only-show-errors"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(f"az {args[0]} {args[1]} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args).stdout)

    def register(self) -> None:
        self.run(
            "cloud", "register", "-n", "ppauth", "--endpoint-resource-manager", self.emu.api_url
        )
        self.run("cloud", "set", "-n", "ppauth")

    def login_secret(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        s = self.emu.sample
        return self.run(
            "login",
            "--service-principal",
            "--username",
            s.client_id,
            f"--password={s.client_secret}",
            "--tenant",
            s.tenant_id,
            *extra,
            check=check,
        )


@pytest.fixture
def az(emu, tmp_path) -> AzureCli:
    return AzureCli(emu, tmp_path / "azure-config")


@needs_az
def test_az_cloud_register_reads_the_metadata_endpoint(emu, az):
    az.register()

    cloud = az.json("cloud", "show", "-n", "ppauth")

    assert cloud["isActive"] is True
    assert cloud["endpoints"]["activeDirectory"] == emu.authority_host
    # the command line's --endpoint-resource-manager wins over the metadata's (with a slash)
    assert cloud["endpoints"]["resourceManager"] == emu.api_url
    assert cloud["endpoints"]["activeDirectoryResourceId"] == "https://management.core.windows.net/"
    [metadata] = emu.requests("arm-metadata")
    assert metadata.status == 200
    assert emu.count("token") == 0


@needs_az
def test_az_login_get_access_token_and_rest(emu, az):
    sid = emu.arm.add_subscription("Contoso Dev")
    az.register()

    [account] = json.loads(az.login_secret().stdout)

    assert account["id"] == sid
    assert account["name"] == "Contoso Dev"
    assert account["tenantId"] == emu.sample.tenant_id
    assert account["user"] == {"name": emu.sample.client_id, "type": "servicePrincipal"}
    [token_request] = emu.requests("token")
    assert token_request.grant_type == "client_credentials"
    assert token_request.scope is not None
    assert token_request.scope.startswith("https://management.core.windows.net//.default")
    assert [r.path for r in emu.requests("arm")] == ["/subscriptions"]

    issued = az.json("account", "get-access-token")

    assert issued["subscription"] == sid
    assert unverified(issued["accessToken"])[1]["aud"] == "https://management.core.windows.net/"
    assert emu.count("token") == 1  # from az's msal cache

    listed = az.json("rest", "--method", "get", "--url", "/subscriptions?api-version=2022-12-01")
    one = az.json("rest", "--url", f"{emu.api_url}/subscriptions/{sid}?api-version=2022-12-01")

    assert [s["subscriptionId"] for s in listed["value"]] == [sid]
    assert one["displayName"] == "Contoso Dev"
    arm = emu.requests("arm")
    assert [r.status for r in arm] == [200, 200, 200]
    assert all(r.authorization == arm[0].authorization for r in arm)  # one token throughout
    assert emu.count("token") == 1


@needs_az
def test_az_login_without_subscriptions_needs_allow_no_subscriptions(emu, az):
    az.register()

    refused = az.login_secret(check=False)
    assert refused.returncode != 0
    assert "No subscriptions found" in refused.stderr

    [account] = json.loads(az.login_secret("--allow-no-subscriptions").stdout)
    assert account["id"] == emu.sample.tenant_id  # a tenant-level account
    issued = az.json("account", "get-access-token", "--tenant", emu.sample.tenant_id)
    assert unverified(issued["accessToken"])[1]["tid"] == emu.sample.tenant_id


@needs_az
def test_az_login_with_a_certificate_and_a_token_for_another_resource(emu, az, tmp_path):
    emu.arm.add_subscription("Cert sub")
    pem = tmp_path / "sp.pem"
    pem.write_bytes(emu.sample.certificate.pem_bundle)
    pem.chmod(0o600)
    az.register()

    az.run(
        "login",
        "--service-principal",
        "--username",
        emu.sample.cert_client_id,
        "--certificate",
        str(pem),
        "--tenant",
        emu.sample.tenant_id,
    )
    issued = az.json("account", "get-access-token", "--resource", "https://vault.azure.net")

    claims = unverified(issued["accessToken"])[1]
    assert claims["aud"].rstrip("/") == "https://vault.azure.net"
    assert claims["appid"] == emu.sample.cert_client_id
    tokens = emu.requests("token")
    assert len(tokens) == 2  # ARM at login, then the vault
    assert all(t.client_id == emu.sample.cert_client_id for t in tokens)
    assert all("client_assertion" in t.form_fields for t in tokens)


@needs_az
def test_az_reads_its_clouds_from_arm_cloud_metadata_url(emu, az):
    """The other way az learns a cloud: the 2019-05-01 list, read with urllib (whose
    trust comes from SSL_CERT_FILE, not REQUESTS_CA_BUNDLE)."""
    sid = emu.arm.add_subscription("Listed")
    az.env["ARM_CLOUD_METADATA_URL"] = f"{emu.api_url}/metadata/endpoints?api-version=2019-05-01"
    az.env["SSL_CERT_FILE"] = emu.ca_bundle

    assert az.json("cloud", "list", "--query", "[].name") == ["PpauthEmulator"]
    az.run("cloud", "set", "-n", "PpauthEmulator")
    [account] = json.loads(az.login_secret().stdout)

    assert account["id"] == sid
    assert account["cloudName"] == "PpauthEmulator"
    assert [r.status for r in emu.requests("arm-metadata")] == [200]
    assert az.json("group", "list") == []  # the subscription's (empty) resource groups
    assert emu.requests("arm")[-1].path == f"/subscriptions/{sid}/resourcegroups"


#: azure-cli's own client id: a first-party public client in every Entra ID tenant
AZURE_CLI_APP = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


@needs_az
def test_az_device_code_login_lists_tenants_then_subscriptions(emu, az):
    """A user sign-in without ``--tenant``: az asks ``/tenants``, then each tenant's
    subscriptions with a token for that tenant (Entra knows az's app everywhere; the
    emulator is told)."""
    emu.add_app(client_id=AZURE_CLI_APP, public_client=True, name="Microsoft Azure CLI")
    sid = emu.arm.add_subscription("User's")
    az.register()
    assert AZ is not None
    with subprocess.Popen(
        [AZ, "login", "--use-device-code", "--only-show-errors"],
        env=az.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while not emu.device_codes() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            [code] = emu.device_codes()
            emu.approve_device(code)
            out, err = proc.communicate(timeout=120)
        except BaseException:
            proc.kill()  # never leave az polling for its 15 minutes
            raise

    assert proc.returncode == 0, err[-2000:]
    assert "/devicelogin" in err  # az printed the emulator's verification URI
    [account] = json.loads(out)
    assert account["id"] == sid
    assert account["user"] == {"name": emu.sample.username, "type": "user"}
    assert [r.path for r in emu.requests("arm")] == ["/tenants", "/subscriptions"]
    assert all(r.status == 200 for r in emu.requests("arm"))


@needs_az
def test_az_rest_with_a_resource_reads_the_emulated_key_vault(emu, az):
    emu.arm.add_subscription("S")
    version = emu.set_secret("from-az", "hello", content_type="text/plain")
    az.register()
    az.login_secret()

    secret = az.json(
        "rest",
        "--url",
        f"{emu.vault_url}/secrets/from-az?api-version=7.4",
        "--resource",
        "https://vault.azure.net",
    )

    assert secret["value"] == "hello"
    assert secret["id"] == f"{emu.vault_url}/secrets/from-az/{version}"
    [read] = emu.requests("vault")
    assert read.status == 200  # az rest sends the token up front: no challenge round trip
    assert [t.scope.split()[0] for t in emu.requests("token") if t.scope] == [
        "https://management.core.windows.net//.default",
        "https://vault.azure.net/.default",
    ]


@needs_az
def test_az_keyvault_commands_reach_the_emulated_vault_by_id(emu, az):
    emu.arm.add_subscription("S")
    emu.set_secret("first", "one")
    version = emu.set_secret("second", "two", content_type="text/plain")
    az.register()
    az.login_secret()

    shown = az.json("keyvault", "secret", "show", "--id", f"{emu.vault_url}/secrets/second")
    listed = az.json("keyvault", "secret", "list", "--id", emu.vault_url)

    assert shown["value"] == "two"
    assert shown["id"] == f"{emu.vault_url}/secrets/second/{version}"
    assert shown["contentType"] == "text/plain"
    assert sorted(item["name"] for item in listed) == ["first", "second"]
    # each az process starts with the challenge; the vault token comes from az's cache
    assert [r.status for r in emu.requests("vault")] == [401, 200, 401, 200]
    assert emu.count("token") == 2  # ARM at login, the vault once
