"""End to end: PowerPlatformAuth finds the keyring plugin through its entry point.

Real parts throughout: the installed entry point, the real ``keyring`` library with the
Secret Service (gnome-keyring) or keyrings.alt's file backend, msal, and HTTPS to the
emulator. Every test runs once per backend (``any_keyring``).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
import warnings
from typing import Any

import pytest
import requests
from requests_ppauth_keyring import has_secret, set_secret

from requests_ppauth import (
    NoCredentialError,
    PowerPlatformAuth,
    ROPCWarning,
    SecretReferenceError,
    SourceError,
)
from requests_ppauth.plugins import get_plugins
from requests_ppauth.testing import Emulator
from requests_ppauth.testing.pytest_plugin import PPAuthEnv

ENVIRONMENTS = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)
POWERAPPS_SCOPE = "https://service.powerapps.com//.default"


def auth_for(emu: Emulator) -> PowerPlatformAuth:
    return PowerPlatformAuth(
        hosts={emu.api_url.split("//")[1]: POWERAPPS_SCOPE}, verify=emu.ca_bundle
    )


def get_environments(emu: Emulator, auth: PowerPlatformAuth) -> requests.Response:
    # verify= per call: REQUESTS_CA_BUNDLE in the environment would win over a session's
    return requests.get(emu.api_url + ENVIRONMENTS, auth=auth, verify=emu.ca_bundle, timeout=30)


def cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m requests_ppauth_keyring ...`` in a subprocess, with this environment."""
    return subprocess.run(
        [sys.executable, "-m", "requests_ppauth_keyring", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_entry_point_is_installed() -> None:
    plugins = get_plugins()
    assert "keyring" in plugins.plugin_names()
    assert [s.name for s in plugins.sources()][:3] == ["env", "file", "keyring"]
    assert "keyring" in [r.name for r in plugins.resolvers()]


def test_client_secret_from_the_keyring(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        f'authority_host = "{emu.authority_host}"\n'
    )
    set_secret("default", "client_secret", s.client_secret)
    auth = auth_for(emu)
    r = get_environments(emu, auth)
    assert r.status_code == 200, r.text
    assert r.json()["value"]
    assert auth.provider.credential.source == "keyring"
    assert s.client_secret not in repr(auth) + repr(auth.provider.credential)


def test_profile_service_and_explicit_profile(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(
        f'[profiles.work]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        f'authority_host = "{emu.authority_host}"\n'
        '[profiles.work.keyring]\nservice = "team-automation"\n'
    )
    set_secret("work", "client_secret", s.client_secret, service="team-automation")
    auth = PowerPlatformAuth(
        "work", hosts={emu.api_url.split("//")[1]: POWERAPPS_SCOPE}, verify=emu.ca_bundle
    )
    assert get_environments(emu, auth).status_code == 200


def test_user_password_from_the_keyring(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    # The file source claims a profile with a username; `sources` sends it to the keyring.
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.public_client_id}"\n'
        f'username = "{s.username}"\nauthority_host = "{emu.authority_host}"\n'
        'sources = ["env", "keyring"]\n'
    )
    set_secret("default", "password", s.password)
    auth = auth_for(emu)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ROPCWarning)
        r = get_environments(emu, auth)
    assert r.status_code == 200, r.text
    assert auth.provider.credential.kind == "password"


def test_certificate_password_from_the_keyring(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    pfx_password = f"pfx-{uuid.uuid4().hex}"
    path = ppauth_env.root / "client.pfx"
    path.write_bytes(s.certificate.pfx(pfx_password))
    path.chmod(0o600)  # a key file open to others is refused
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.cert_client_id}"\n'
        f'certificate_path = "{path}"\nauthority_host = "{emu.authority_host}"\n'
        'sources = ["keyring"]\n'
    )
    set_secret("default", "certificate_password", pfx_password)
    auth = auth_for(emu)
    assert get_environments(emu, auth).status_code == 200
    assert auth.provider.credential.kind == "certificate"


@pytest.mark.parametrize("form", ["keyring:{name}", "keyring:ci-secrets/{name}", "ref-table"])
def test_keyring_reference_in_the_config_file(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator, form: str
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    name = f"app-{uuid.uuid4().hex[:8]}"
    if form == "ref-table":
        value, service = f'{{ ref = "keyring:{name}" }}', "requests-ppauth"
    else:
        value = '"' + form.format(name=name) + '"'
        service = "ci-secrets" if "/" in form else "requests-ppauth"
    any_keyring.backend.set_password(service, name, s.client_secret)
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        f'client_secret = {value}\nauthority_host = "{emu.authority_host}"\n',
        mode=0o644,  # a reference is not a secret: any file mode will do
    )
    auth = auth_for(emu)
    assert get_environments(emu, auth).status_code == 200
    assert auth.provider.credential.source == "file"  # the file source, through the resolver


def test_keyring_reference_in_the_environment(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    any_keyring.backend.set_password("requests-ppauth", "from-env", s.client_secret)
    ppauth_env.set(
        PPAUTH_TENANT_ID=s.tenant_id,
        PPAUTH_CLIENT_ID=s.client_id,
        PPAUTH_CLIENT_SECRET="keyring:from-env",
        PPAUTH_AUTHORITY_HOST=emu.authority_host,
    )
    assert get_environments(emu, auth_for(emu)).status_code == 200


def test_missing_reference_is_a_clear_error(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        'client_secret = "keyring:nothing-here"\n'
    )
    with pytest.raises(SecretReferenceError) as info:
        get_environments(emu, auth_for(emu))
    message = str(info.value)
    assert "'keyring:nothing-here'" in message
    assert "python -m requests_ppauth_keyring set keyring:nothing-here" in message
    assert emu.count("token") == 0


def test_nothing_in_the_keyring_explains_itself(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
    )
    with pytest.raises(NoCredentialError) as info:
        get_environments(emu, auth_for(emu))
    why = info.value.reasons["keyring"]
    assert "no secret for profile 'default' in the keyring" in why
    assert "python -m requests_ppauth_keyring set default client_secret" in why


def test_secret_without_identifiers_is_a_source_error(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(f'[profiles.default]\nclient_id = "{s.client_id}"\n')
    set_secret("default", "client_secret", s.client_secret)
    with pytest.raises(SourceError) as info:
        get_environments(emu, auth_for(emu))
    assert info.value.source == "keyring"
    assert "has no tenant_id" in str(info.value)
    assert s.client_secret not in str(info.value)


def test_cli_stores_from_stdin_and_never_prints_it(
    any_keyring: Any, ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    # the subprocess opens the same keyring: the same bus, or the same file under tmp_path
    ppauth_env.set(PYTHON_KEYRING_BACKEND=any_keyring.env_name)
    stored = cli("set", "default", "client_secret", stdin=s.client_secret + "\n")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.startswith("stored client_secret of profile 'default' in the keyring")
    assert s.client_secret not in stored.stdout + stored.stderr
    assert has_secret("default", "client_secret")

    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        f'authority_host = "{emu.authority_host}"\n'
    )
    assert get_environments(emu, auth_for(emu)).status_code == 200  # the newline was dropped


# -- no usable backend ----------------------------------------------------------------------
INSTALL_WORDS = ("gnome-keyring", "dbus", "pip install keyrings.alt")


def test_no_backend_profile_that_uses_the_keyring(
    ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample  # keyring: the `fail` backend (conftest)
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        'sources = ["keyring"]\n'
    )
    with pytest.raises(SourceError) as info:
        get_environments(emu, auth_for(emu))
    message = str(info.value)
    assert message.startswith("[keyring] profile 'default': no usable keyring backend")
    assert all(word in message for word in INSTALL_WORDS), message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_no_backend_other_profiles_get_a_note(
    ppauth_env: PPAuthEnv, ppauth_emulator: Emulator
) -> None:
    emu = ppauth_emulator
    with pytest.raises(NoCredentialError) as info:
        get_environments(emu, auth_for(emu))
    why = info.value.reasons["keyring"]
    assert all(word in why for word in INSTALL_WORDS), why


def test_no_backend_reference(ppauth_env: PPAuthEnv, ppauth_emulator: Emulator) -> None:
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        'client_secret = "keyring:prod"\n'
    )
    with pytest.raises(SecretReferenceError) as info:
        get_environments(emu, auth_for(emu))
    message = str(info.value)
    assert "cannot resolve 'keyring:prod'" in message
    assert all(word in message for word in INSTALL_WORDS), message


@pytest.mark.parametrize(
    "backend", ["keyring.backends.fail.Keyring", "no.such.module.Keyring"], ids=["fail", "bad-name"]
)
def test_no_backend_cli(ppauth_env: PPAuthEnv, backend: str) -> None:
    ppauth_env.set(PYTHON_KEYRING_BACKEND=backend)
    run = cli("set", "default", "client_secret", stdin="s3cret-value")
    assert run.returncode == 3
    assert "Traceback" not in run.stderr
    assert "s3cret-value" not in run.stdout + run.stderr
    assert all(word in run.stderr for word in INSTALL_WORDS), run.stderr
    assert run.stderr.count("\n") == 1  # one line
