"""A person signing in in the browser (``ppauth login``, ``InteractiveBrowser``,
``interactive = true``): against the emulator's authorization endpoint, through msal's
real loopback listener, with ``BROWSER`` set to the scripted browser of
``requests_ppauth.testing.browser`` (it fills the sign-in page as a person would).
Where no browser can open, a terminal gets a device code and a batch job an error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from requests_ppauth import (
    InteractiveBrowser,
    PowerPlatformAuth,
    SourceError,
    TokenAcquisitionError,
)
from tests._cache_state import load
from tests.test_cli import (
    APPS_SCOPE,
    ROOT,
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    failed,
    ok,
    ppauth,
)
from tests.test_cli_login import _only_errors, login


@pytest.fixture(autouse=True)
def no_display(monkeypatch):
    """No display and no browser unless a test sets BROWSER: what CI and a server have."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emu(ppauth_emulator, ppauth_env):
    """The emulator as authority, and a profile ``admin`` for its public client app that
    signs in interactively."""
    emu = ppauth_emulator
    ppauth_env.set(PPAUTH_AUTHORITY_HOST=emu.authority_host, PPAUTH_CA_BUNDLE=emu.ca_bundle)
    ppauth_env.write_config(
        f'[profiles.admin]\nclient_id = "{emu.sample.public_client_id}"\n'
        f'tenant_id = "{emu.sample.tenant_id}"\ninteractive = true\n'
    )
    return emu


def test_without_a_display_login_falls_back_to_a_device_code(emu, ppauth_env):
    proc = login(emu, "approve", "--profile", "admin", flags=())

    out = ok(proc)
    assert f"signed in as {emu.sample.username}" in out
    assert "Opening the browser" not in proc.stderr
    assert f"{emu.authority_host}/devicelogin" in proc.stderr
    assert emu.count("devicecode") == 1 and emu.count("authorize") == 0
    # the profile (interactive = true) finds that sign-in: a second process is silent
    token = ok(ppauth("token", "--profile", "admin", "--scope", APPS_SCOPE)).strip()
    assert token.count(".") == 2
    assert emu.count("devicecode") == 1
    who = json.loads(ok(ppauth("whoami", "--profile", "admin", "--json")))
    assert who["user"] == emu.sample.username and who["credential"] == "interactive_browser"


def test_a_batch_job_without_display_or_terminal_fails_at_once(emu, ppauth_env):
    ppauth_env.set(PPAUTH_PROFILE="admin")
    auth = PowerPlatformAuth()
    with pytest.raises(TokenAcquisitionError) as exc:
        auth.provider.get(APPS_SCOPE)
    assert exc.value.error == "interaction_required"
    assert "no browser or terminal" in str(exc.value)
    assert "ppauth login" in (exc.value.hint or "")
    assert emu.count("devicecode") == 0 and emu.count("authorize") == 0
    assert emu.count("token") == 0
    # the CLI says the same, with the hint
    line, hint = failed(ppauth("token", "--profile", "admin", "--scope", APPS_SCOPE))
    assert "no browser or terminal" in line and "ppauth login" in hint


def test_a_profile_cannot_be_both_device_code_and_interactive(emu, ppauth_env):
    ppauth_env.write_config(
        f'[profiles.admin]\nclient_id = "{emu.sample.public_client_id}"\n'
        "interactive = true\ndevice_code = true\n"
    )
    ppauth_env.set(PPAUTH_PROFILE="admin")
    with pytest.raises(SourceError, match="both device_code = true and interactive = true"):
        PowerPlatformAuth().provider.get(APPS_SCOPE)
    ppauth_env.write_config("[profiles.admin]\ninteractive = true\n")
    with pytest.raises(SourceError, match="interactive needs a client_id"):
        PowerPlatformAuth().provider.get(APPS_SCOPE)


def test_the_credential_shows_no_prompt_callable_and_compares_by_ids():
    one = InteractiveBrowser(tenant_id="organizations", client_id="app", prompt=print)
    two = InteractiveBrowser(tenant_id="organizations", client_id="app")
    assert one == two and "prompt" not in repr(one)
    assert one.kind == "interactive_browser" and one.timeout == 300.0


# -- through the (scripted) browser ---------------------------------------------------
@pytest.fixture(scope="session")
def browser_script(tmp_path_factory) -> str:
    """One script for the session: the stdlib's webbrowser reads BROWSER once per
    process, so what the browser does comes from variables it reads each time."""
    from requests_ppauth.testing.browser import write_browser_script

    return write_browser_script(tmp_path_factory.mktemp("browser"))


@pytest.fixture
def person(browser_script, ppauth_env, emu, tmp_path):
    """BROWSER set: the sample user signs in when a browser opens; ``person.log`` is
    what the browser did (one line per page)."""

    class Person:
        log = tmp_path / "browser.log"

        def __init__(self) -> None:
            self.act()

        def act(self, username: str | None = None, password: str | None = None, **more: str):
            ppauth_env.set(
                BROWSER=browser_script,
                PPAUTH_TEST_BROWSER_USERNAME=username or emu.sample.username,
                PPAUTH_TEST_BROWSER_PASSWORD=password or emu.sample.password,
                PPAUTH_TEST_BROWSER_LOG=str(self.log),
                PPAUTH_TEST_BROWSER_CA=emu.ca_bundle,
                **{f"PPAUTH_TEST_BROWSER_{k.upper()}": v for k, v in more.items()},
            )

        def pages(self) -> str:
            return self.log.read_text() if self.log.exists() else ""

    return Person()


def browser_login(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "requests_ppauth", "login", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_login_in_the_browser_then_every_process_is_silent(emu, person, ppauth_env):
    proc = browser_login("--profile", "admin")

    out = ok(proc)
    assert f"signed in as {emu.sample.username}" in out and "profile admin" in out
    assert "Opening the browser" in proc.stderr
    assert emu.count("devicecode") == 0
    (exchange,) = [r for r in emu.requests("token") if r.grant_type == "authorization_code"]
    assert "code_verifier" in exchange.form_fields  # PKCE
    state = load(ppauth_env.cache_dir)
    assert state["RefreshToken"] and state["PPAuthToken"]
    for section in ("PPAuthToken", "RefreshToken", "IdToken"):
        for entry in state[section].values():
            assert entry["secret"] not in proc.stdout + proc.stderr + person.pages()
    assert emu.sample.password not in person.pages()

    # another process, another scope: the refresh token answers, no browser opens
    person.log.unlink()
    ppauth_env.set(BROWSER=None)
    token = ok(ppauth("token", "--profile", "admin", "--scope", APPS_SCOPE)).strip()
    assert token.count(".") == 2
    assert emu.requests("token")[-1].grant_type == "refresh_token"
    assert not person.log.exists()
    assert f"signed out {emu.sample.username}" in ok(ppauth("logout", "--profile", "admin"))


def test_interactive_browser_in_code_signs_in_once(emu, person):
    cred = InteractiveBrowser(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.public_client_id,
        authority_host=emu.authority_host,
        timeout=60,
    )
    first = PowerPlatformAuth(credential=cred, verify=emu.ca_bundle).provider.get(APPS_SCOPE)
    assert emu.count("authorize") >= 1
    signed_in = emu.count("authorize")
    # a new PowerPlatformAuth (a new process would do the same): silent, from the cache
    again = PowerPlatformAuth(credential=cred, verify=emu.ca_bundle).provider.get(APPS_SCOPE)
    assert again.token == first.token and emu.count("authorize") == signed_in


def test_an_mfa_user_passes_the_second_step(emu, person, ppauth_env):
    user = emu.add_user("mfa@contoso.onmicrosoft.com", "mfa-password-1", mfa_required=True)
    person.act(username=user.username, password="mfa-password-1", mfa_code=emu.mfa_code)
    cred = InteractiveBrowser(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.public_client_id,
        authority_host=emu.authority_host,
        timeout=60,
    )
    token = PowerPlatformAuth(credential=cred, verify=emu.ca_bundle).provider.get(APPS_SCOPE)
    claims = json.loads(_payload(token.token))
    assert claims.get("upn", claims.get("preferred_username")) == user.username
    assert "mfa" in claims.get("amr", [])


def test_cancelled_consent_is_a_typed_error(emu, person):
    emu.add_user("new@contoso.onmicrosoft.com", "new-password-1", consented=False)
    person.act(username="new@contoso.onmicrosoft.com", password="new-password-1", consent="cancel")
    cred = InteractiveBrowser(
        tenant_id=emu.sample.tenant_id,
        client_id=emu.sample.public_client_id,
        authority_host=emu.authority_host,
        timeout=60,
    )
    with pytest.raises(TokenAcquisitionError) as exc:
        PowerPlatformAuth(credential=cred, verify=emu.ca_bundle).provider.get(APPS_SCOPE)
    assert exc.value.error == "access_denied"
    assert "65004" in str(exc.value)


def test_a_browser_that_never_answers_times_out(emu, person, ppauth_env, tmp_path):
    never = tmp_path / "never-browser"
    never.write_text("#!/bin/sh\nexit 0\n")  # opens nothing, as a closed tab would
    never.chmod(0o700)
    proc = subprocess.run(
        [sys.executable, "-m", "requests_ppauth", "login", "--profile", "admin", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**__import__("os").environ, "BROWSER": str(never)},
    )
    assert "Opening the browser" in proc.stderr
    line, hint = failed(_only_errors(proc))
    assert "did not finish within 2 s" in line and "ppauth login" in hint
    assert emu.count("token") == 0


def _payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_profile_add_interactive_writes_a_profile_login_uses(emu, ppauth_env):
    ppauth_env.write_config("")
    out = ok(
        ppauth(
            "profile",
            "add",
            "desk",
            "--client-id",
            emu.sample.public_client_id,
            "--tenant-id",
            emu.sample.tenant_id,
            "--interactive",
        )
    )
    assert "desk" in out
    text = ppauth_env.config_path.read_text()
    assert "interactive = true" in text and "device_code" not in text
    listing = json.loads(ok(ppauth("profile", "list", "--json")))
    (row,) = [r for r in listing["profiles"] if r["name"] == "desk"]
    assert row["kind"] == "interactive browser", row
    line, _ = failed(
        ppauth("profile", "add", "two", "--client-id", "app", "--interactive", "--device-code"),
        2,
    )
    assert "--device-code and --interactive are 2 credentials" in line
