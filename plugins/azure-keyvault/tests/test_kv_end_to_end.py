"""Installed through its entry point, the plugin gets a real Power Platform token."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import requests
from requests_ppauth import PowerPlatformAuth, SecretReferenceError, SourceError
from requests_ppauth.plugins import Plugins

ENVIRONMENTS = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)


def toml_profile(vault, table: str, extra: str = "") -> str:
    """A config file: the sample app's ids in the profile, its secret in the vault."""
    s = vault.emu.sample
    return f"""
[profiles.default]
tenant_id = "{s.tenant_id}"
authority_host = "{vault.emu.authority_host}"
{extra}

[profiles.default.keyvault]
{table}

[profiles.default.keyvault.credential]
type = "client_secret"
client_id = "{vault.reader_id}"
client_secret = "{vault.reader_secret}"
"""


def get_environments(vault, **options):
    emu = vault.emu
    auth = PowerPlatformAuth(
        hosts={emu.api_url.split("//")[1]: "https://service.powerapps.com//.default"},
        verify=emu.ca_bundle,
        **options,
    )
    response = requests.get(emu.api_url + ENVIRONMENTS, auth=auth, verify=emu.ca_bundle)
    return auth, response


def test_the_entry_point_registers_the_source_and_the_resolver():
    plugins = Plugins()

    assert "keyvault" in plugins.plugin_names()
    assert ("keyvault", 40) in [(s.name, s.priority) for s in plugins.sources()]
    assert "keyvault" in [r.name for r in plugins.resolvers()]


def test_client_secret_from_the_vault_gets_a_power_platform_token(vault, ppauth_env):
    s = vault.emu.sample
    reference = vault.put(s.client_secret)
    ppauth_env.write_config(
        toml_profile(
            vault,
            f'client_secret = "{reference}"\nhosts = ["{vault.host}"]',
            f'client_id = "{s.client_id}"\nca_bundle = "{vault.emu.ca_bundle}"',
        )
    )

    auth, response = get_environments(vault)

    assert response.status_code == 200
    assert response.json()["value"]
    assert auth.provider.credential.source == "keyvault"
    assert [r.client_id for r in vault.emu.requests("token")] == [vault.reader_id, s.client_id]


def test_certificate_from_the_vault_gets_a_power_platform_token(vault, ppauth_env):
    s = vault.emu.sample
    pfx = base64.b64encode(s.certificate.pfx()).decode()
    reference = vault.put(pfx, content_type="application/x-pkcs12")
    ppauth_env.set(PPAUTH_CA_BUNDLE=vault.emu.ca_bundle, PPAUTH_KEYVAULT_HOSTS=vault.host)
    ppauth_env.write_config(
        toml_profile(vault, f'certificate = "{reference}"', f'client_id = "{s.cert_client_id}"')
    )

    auth, response = get_environments(vault)

    assert response.status_code == 200
    assert auth.provider.credential.kind == "certificate"
    assert auth.provider.credential.source == "keyvault"


@pytest.mark.parametrize("hosts_in", ["environment", "profile"])
def test_the_file_source_resolves_a_vault_reference_through_the_plugin(vault, ppauth_env, hosts_in):
    """``client_secret = "<vault URL>"`` in the profile itself: the file source asks us."""
    s = vault.emu.sample
    reference = vault.put(s.client_secret)
    table = f'hosts = ["{vault.host}"]' if hosts_in == "profile" else ""
    if hosts_in == "environment":
        ppauth_env.set(PPAUTH_KEYVAULT_HOSTS=vault.host)
    ppauth_env.write_config(
        toml_profile(
            vault,
            table,
            f'client_id = "{s.client_id}"\nclient_secret = "{reference}"\n'
            f'ca_bundle = "{vault.emu.ca_bundle}"',
        )
    )

    auth, response = get_environments(vault)

    assert response.status_code == 200
    assert auth.provider.credential.source == "file"
    assert vault.emu.count("vault") == 2


def test_a_secret_is_read_once_for_many_auth_objects(vault, ppauth_env):
    s = vault.emu.sample
    reference = vault.put(s.client_secret)
    ppauth_env.set(PPAUTH_CA_BUNDLE=vault.emu.ca_bundle, PPAUTH_KEYVAULT_HOSTS=vault.host)
    ppauth_env.write_config(
        toml_profile(vault, f'client_secret = "{reference}"', f'client_id = "{s.client_id}"')
    )

    for _ in range(3):
        _, response = get_environments(vault, cache=False)
        assert response.status_code == 200

    assert vault.emu.count("vault") == 2  # challenge + one read: the rest from memory


def test_a_denied_vault_stops_the_search_with_the_reason(vault, ppauth_env):
    s = vault.emu.sample
    reference = vault.put(s.client_secret)
    vault.emu.deny_vault(vault.reader_id)
    ppauth_env.set(PPAUTH_CA_BUNDLE=vault.emu.ca_bundle, PPAUTH_KEYVAULT_HOSTS=vault.host)
    ppauth_env.write_config(
        toml_profile(vault, f'client_secret = "{reference}"', f'client_id = "{s.client_id}"')
    )

    with pytest.raises(SourceError, match="lacks 'get' permission") as info:
        get_environments(vault)

    assert info.value.source == "keyvault"
    assert vault.emu.count("token") == 1  # the vault reader's; no Power Platform token


def test_blocking_the_plugin_names_the_package_to_install(ppauth_env):
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="keyvault")
    ppauth_env.write_config(
        '[profiles.default]\ntenant_id = "t.example"\nclient_id = "c"\n'
        'client_secret = "https://contoso.vault.azure.net/secrets/pp"\n'
    )

    with pytest.raises(SecretReferenceError, match="pip install requests-ppauth-keyvault"):
        PowerPlatformAuth()._find_credential()


def test_importing_the_plugin_imports_no_azure_library():
    code = (
        "import json, sys\n"
        "import requests_ppauth_keyvault\n"
        "from requests_ppauth.plugins import Plugins\n"
        "Plugins().sources(); Plugins().resolvers()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'azure')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(out.stdout) == []
