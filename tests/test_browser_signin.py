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
from tests.test_cli_login import login


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


def _unused(*_: object) -> None:  # keeps imports used until the browser tests land
    _ = (subprocess, sys, ROOT, load)
