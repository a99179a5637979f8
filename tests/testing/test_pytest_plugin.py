"""The shipped pytest plugin, loaded through its ``pytest11`` entry point in a fresh pytest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import requests_ppauth

# where the package lives, so the inner pytest imports this checkout whatever its cwd
PACKAGE_ROOT = str(Path(requests_ppauth.__file__).resolve().parent.parent)


INNER_TESTS = """
import os
import stat
from pathlib import Path

import pytest
import requests

OUTSIDE = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "PPAUTH_CLIENT_SECRET", "PPAUTH_PROFILE")
SEEN = {}


def test_outside_variables_are_visible_without_the_fixture():
    for name in OUTSIDE:
        assert os.environ[name] == "from-outside-" + name


def test_ppauth_env_removes_credential_variables(ppauth_env):
    leftovers = [n for n in os.environ if n.startswith(("AZURE_", "IDENTITY_", "MSI_"))]
    assert leftovers == []
    assert sorted(n for n in os.environ if n.startswith("PPAUTH_")) == [
        "PPAUTH_CACHE_DIR",
        "PPAUTH_CONFIG",
    ]


def test_ppauth_env_points_config_and_cache_under_tmp(ppauth_env, tmp_path):
    config = Path(os.environ["PPAUTH_CONFIG"])
    cache = Path(os.environ["PPAUTH_CACHE_DIR"])
    assert config == ppauth_env.config_path
    assert cache == ppauth_env.cache_dir
    assert config.is_relative_to(tmp_path)
    assert cache.is_relative_to(tmp_path)
    assert config.parent.is_dir()
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        assert Path(os.environ[name]).is_relative_to(tmp_path), name
    written = ppauth_env.write_config("[default]\\n")
    assert written == config
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_variables_come_back_after_the_fixture():
    test_outside_variables_are_visible_without_the_fixture()
    assert "PPAUTH_CONFIG" not in os.environ
    assert "PPAUTH_CLIENT_ID" not in os.environ


def test_secret_flow(ppauth_env, ppauth_emulator):
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.use_emulator(emu, "secret")
    assert os.environ["PPAUTH_TENANT_ID"] == s.tenant_id
    assert os.environ["PPAUTH_AUTHORITY_HOST"] == emu.authority_host
    assert os.environ["PPAUTH_CA_BUNDLE"] == emu.ca_bundle
    assert os.environ["PPAUTH_CLIENT_ID"] == s.client_id
    assert os.environ["PPAUTH_CLIENT_SECRET"] == s.client_secret
    for absent in ("PPAUTH_USERNAME", "PPAUTH_PASSWORD", "PPAUTH_CLIENT_CERTIFICATE_PATH"):
        assert absent not in os.environ
    # the variables really lead to a working token endpoint
    resp = requests.post(
        os.environ["PPAUTH_AUTHORITY_HOST"] + "/" + os.environ["PPAUTH_TENANT_ID"]
        + "/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": os.environ["PPAUTH_CLIENT_ID"],
            "client_secret": os.environ["PPAUTH_CLIENT_SECRET"],
            "scope": "https://api.powerplatform.com/.default",
        },
        verify=os.environ["PPAUTH_CA_BUNDLE"],
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert emu.count("token") == 1


def test_certificate_flow(ppauth_env, ppauth_emulator, tmp_path):
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.use_emulator(emu, "certificate")
    assert os.environ["PPAUTH_CLIENT_ID"] == s.cert_client_id
    path = Path(os.environ["PPAUTH_CLIENT_CERTIFICATE_PATH"])
    assert path.is_file()
    assert path.is_relative_to(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == s.certificate.pem_bundle
    assert os.environ["PPAUTH_AUTHORITY_HOST"] == emu.authority_host
    assert "PPAUTH_CLIENT_SECRET" not in os.environ


def test_password_flow(ppauth_env, ppauth_emulator):
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.use_emulator(emu, "password")
    assert os.environ["PPAUTH_CLIENT_ID"] == s.public_client_id
    assert os.environ["PPAUTH_USERNAME"] == s.username
    assert os.environ["PPAUTH_PASSWORD"] == s.password
    assert os.environ["PPAUTH_TENANT_ID"] == s.tenant_id
    assert "PPAUTH_CLIENT_SECRET" not in os.environ


def test_unknown_flow_raises(ppauth_env, ppauth_emulator):
    with pytest.raises(ValueError, match="unknown flow 'device'"):
        ppauth_env.use_emulator(ppauth_emulator, "device")


def test_emulators_first(ppauth_emulator, ppauth_session_emulator):
    assert ppauth_emulator is not ppauth_session_emulator
    assert requests.get(
        ppauth_session_emulator.authority() + "/v2.0/.well-known/openid-configuration",
        verify=ppauth_session_emulator.ca_bundle,
        timeout=10,
    ).status_code == 200
    SEEN["function"] = ppauth_emulator
    SEEN["session"] = ppauth_session_emulator


def test_emulators_second(ppauth_emulator, ppauth_session_emulator):
    assert ppauth_session_emulator is SEEN["session"]
    assert ppauth_emulator is not SEEN["function"]
    with pytest.raises(RuntimeError):
        SEEN["function"].authority_host  # the per-test emulator was stopped
    assert ppauth_session_emulator.count("discovery") == 1  # session state accumulates
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytest run in a subprocess with credential-looking variables set outside."""
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p),
    )
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    # this outer test runs under ppauth_env too: the inner run must not inherit its paths
    monkeypatch.delenv("PPAUTH_CONFIG", raising=False)
    monkeypatch.delenv("PPAUTH_CACHE_DIR", raising=False)
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "PPAUTH_CLIENT_SECRET", "PPAUTH_PROFILE"):
        monkeypatch.setenv(name, f"from-outside-{name}")
    return pytester


def test_fixtures_load_through_the_entry_point_and_behave(inner):
    inner.makepyfile(test_inner=INNER_TESTS)

    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=10)
    assert "requests_ppauth" not in (inner.path / "test_inner.py").read_text()


def test_an_inner_failure_is_reported(inner):
    """The inner run can fail: a wrong expectation about ppauth_env shows up as a failure."""
    inner.makepyfile(
        test_inner="""
        import os

        def test_wrong(ppauth_env):
            assert os.environ.get("AZURE_CLIENT_ID") == "from-outside-AZURE_CLIENT_ID"
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(failed=1)


def test_without_the_plugin_the_fixtures_are_missing(inner):
    inner.makepyfile(
        test_inner="""
        def test_needs_it(ppauth_env):
            pass
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:requests_ppauth")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'ppauth_env' not found*"])


def test_behind_a_corporate_proxy_the_emulator_is_still_reached_direct(inner, monkeypatch):
    """Identity traffic honours HTTPS_PROXY (loopback included, as requests does): on a
    machine whose proxy cannot reach this machine's emulator, ``ppauth_env`` keeps the
    tests working by exempting loopback, and keeps the machine's own exemptions."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nobody there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "intranet.example")
    inner.makepyfile(
        test_inner="""
        import os

        from requests_ppauth import PowerPlatformAuth


        def test_token_through_no_proxy(ppauth_env, ppauth_emulator):
            assert os.environ["NO_PROXY"].split(",")[0] == "intranet.example"
            ppauth_env.use_emulator(ppauth_emulator, "secret")
            token = PowerPlatformAuth().provider.get("https://api.powerplatform.com/.default")
            assert token.token and ppauth_emulator.count("token") == 1


        def test_without_the_fixture_the_proxy_applies():
            assert os.environ["NO_PROXY"] == "intranet.example"
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
