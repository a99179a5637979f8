"""Host -> scope tables per cloud, and the loopback rule for plain http."""

from __future__ import annotations

import pytest

from requests_ppauth.clouds import CLOUDS, get_cloud, is_loopback, scope_for_host

CASES = [
    ("public", "api.powerplatform.com", "https://api.powerplatform.com/.default"),
    ("public", "0ab1.environment.api.powerplatform.com", "https://api.powerplatform.com/.default"),
    ("public", "api.bap.microsoft.com", "https://service.powerapps.com//.default"),
    ("public", "api.powerapps.com", "https://service.powerapps.com//.default"),
    ("public", "api.flow.microsoft.com", "https://service.flow.microsoft.com//.default"),
    ("public", "contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com/.default"),
    ("public", "contoso.crm4.dynamics.com", "https://contoso.crm4.dynamics.com/.default"),
    ("public", "contoso.api.crm11.dynamics.com", "https://contoso.crm11.dynamics.com/.default"),
    ("public", "API.PowerPlatform.com.", "https://api.powerplatform.com/.default"),
    ("gcc", "gov.api.bap.microsoft.us", "https://gov.service.powerapps.us//.default"),
    ("gcc", "contoso.crm9.dynamics.com", "https://contoso.crm9.dynamics.com/.default"),
    ("gcchigh", "high.api.powerapps.us", "https://high.service.powerapps.us//.default"),
    ("gcchigh", "org.crm.microsoftdynamics.us", "https://org.crm.microsoftdynamics.us/.default"),
    ("dod", "api.bap.appsplatform.us", "https://service.apps.appsplatform.us//.default"),
    ("dod", "org.crm.appsplatform.us", "https://org.crm.appsplatform.us/.default"),
    ("china", "api.powerapps.cn", "https://service.powerapps.cn//.default"),
    ("china", "org.crm.dynamics.cn", "https://org.crm.dynamics.cn/.default"),
]


@pytest.mark.parametrize(("cloud", "host", "scope"), CASES)
def test_scope_for_host(cloud, host, scope):
    assert scope_for_host(host, CLOUDS[cloud]) == scope


@pytest.mark.parametrize(
    "host",
    [
        "evil.com",
        "api.powerplatform.com.evil.com",
        "crm.dynamics.com",
        "evilapi.powerplatform.com",
        "contoso.crm.dynamics.com.evil.com",
        "a.b.crm.dynamics.com",
    ],
)
def test_lookalike_hosts_get_no_scope(host):
    assert scope_for_host(host, CLOUDS["public"]) is None


def test_clouds_do_not_share_hosts():
    # A public-cloud profile must not send its token to a GCC High host, and back.
    assert scope_for_host("high.api.powerapps.us", CLOUDS["public"]) is None
    assert scope_for_host("api.powerplatform.com", CLOUDS["gcchigh"]) is None


def test_sovereign_authority_hosts():
    assert get_cloud("gcchigh").authority_host == "https://login.microsoftonline.us"
    assert get_cloud("china").authority_host == "https://login.chinacloudapi.cn"
    assert get_cloud("USGovernment").name == "gcchigh"
    assert get_cloud("AzureChinaCloud").name == "china"


def test_unknown_cloud_lists_the_choices():
    with pytest.raises(ValueError, match="unknown cloud 'mars'.*public"):
        get_cloud("mars")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("app.localhost", True),
        ("10.0.0.1", False),
        ("localhost.evil.com", False),
        ("example.com", False),
    ],
)
def test_loopback(host, expected):
    assert is_loopback(host) is expected
