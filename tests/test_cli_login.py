"""`ppauth login --device-code` and `ppauth logout`, each in a subprocess against the
emulator: the test reads the code the command shows and plays the person at the browser.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading

import pytest
import requests

from tests._cache_state import load, on_disk
from tests.test_cli import (
    APPS_SCOPE,
    BAP_ENVIRONMENTS,
    ROOT,
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    failed,
    ok,
    ppauth,
)

CODE = re.compile(r"enter the code (\S+)")


@pytest.fixture
def emu(ppauth_emulator, ppauth_env):
    """The emulator as authority (host and CA), and a profile for its public client app."""
    emu = ppauth_emulator
    ppauth_env.set(PPAUTH_AUTHORITY_HOST=emu.authority_host, PPAUTH_CA_BUNDLE=emu.ca_bundle)
    ppauth_env.write_config(
        f'[profiles.admin]\nclient_id = "{emu.sample.public_client_id}"\ndevice_code = true\n'
    )
    return emu


def login(
    emu, action: str, *args: str, flags: tuple[str, ...] = ("--device-code",)
) -> subprocess.CompletedProcess[str]:
    """Run `ppauth login --device-code ARGS` (``flags`` instead of --device-code); when
    the code shows on stderr, ``action`` it (``approve``, ``decline``) as the person at
    the browser would."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "requests_ppauth", "login", *flags, *args],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while True:
            line = lines.get(timeout=60)
            if line is None:
                break  # it ended without showing a code
            seen.append(line)
            match = CODE.search(line)
            if match:
                getattr(emu, f"{action}_device")(match.group(1))
                break
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    while not lines.empty():
        seen.append(lines.get() or "")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "".join(seen))


def test_login_then_token_whoami_logout(emu, ppauth_env):
    sample = emu.sample
    proc = login(emu, "approve", "--profile", "admin")

    out = ok(proc)
    assert f"signed in as {sample.username}" in out and "profile admin" in out
    assert f"{emu.authority_host}/devicelogin" in proc.stderr and "Waiting" in proc.stderr
    assert "note:" not in proc.stderr  # the profile says device_code = true
    assert emu.count("devicecode") == 1
    state = load(ppauth_env.cache_dir)
    assert [v["client_id"] for v in state["RefreshToken"].values()] == [sample.public_client_id]
    assert not state["AccessToken"]  # msal's copy is never stored: the token is ours, once
    for entry in state["PPAuthToken"].values():
        assert entry["secret"] not in proc.stdout + proc.stderr

    # another process, another scope: the refresh token answers, nobody signs in again
    token = ok(ppauth("token", "--profile", "admin", "--scope", APPS_SCOPE)).strip()
    resp = requests.get(
        emu.api_url + BAP_ENVIRONMENTS,
        headers={"Authorization": f"Bearer {token}"},
        verify=emu.ca_bundle,
        timeout=30,
    )
    assert resp.status_code == 200 and resp.json()["value"]
    assert emu.requests("token")[-1].grant_type == "refresh_token"
    who = json.loads(ok(ppauth("whoami", "--profile", "admin", "--json")))
    assert who["user"] == sample.username and who["credential"] == "device_code"
    assert who["source"] == "file"
    assert emu.count("devicecode") == 1

    refresh_tokens = [v["secret"] for v in load(ppauth_env.cache_dir)["RefreshToken"].values()]
    assert f"signed out {sample.username}" in ok(ppauth("logout", "--profile", "admin"))
    state = load(ppauth_env.cache_dir)
    assert not state["RefreshToken"] and not state["AccessToken"] and not state["PPAuthToken"]
    for secret in refresh_tokens:  # gone from every file, the log's old records included
        assert secret.encode() not in on_disk(ppauth_env.cache_dir)
    line, hint = failed(ppauth("token", "--profile", "admin", "--scope", APPS_SCOPE))
    assert "no signed-in account" in line and "ppauth login --device-code" in hint
    assert emu.count("devicecode") == 1  # no sign-in started without a person to see it
    assert "no account is signed in" in ok(ppauth("logout", "--profile", "admin"))


def test_login_with_the_app_from_the_environment_suggests_the_profile(emu, ppauth_env):
    ppauth_env.set(PPAUTH_CLIENT_ID=emu.sample.public_client_id)
    proc = login(emu, "approve", "--scope", APPS_SCOPE, "--verbose")

    assert f"signed in as {emu.sample.username}" in ok(proc)
    assert "DEBUG" in proc.stderr
    assert "DC." not in proc.stderr  # the emulator's device codes: they redeem the sign-in
    state = load(ppauth_env.cache_dir)
    assert state["PPAuthToken"] and state["RefreshToken"]
    for section in ("PPAuthToken", "RefreshToken", "IdToken"):
        for entry in state[section].values():
            assert entry["secret"] not in proc.stderr + proc.stdout
    assert "note: add interactive = true" in proc.stderr and "[profiles.default]" in proc.stderr
    (start,) = emu.requests("devicecode")
    assert APPS_SCOPE in start.scope.split() and start.client_id == emu.sample.public_client_id


def test_login_declined(emu):
    proc = login(emu, "decline", "--profile", "admin")

    line, hint = failed(_only_errors(proc))
    assert "authorization_declined" in line and "declined" in hint
    assert "signed in" not in proc.stdout


def _only_errors(proc):
    """The failure lines, without the device code instruction shown before them."""
    kept = [
        line
        for line in proc.stderr.splitlines(keepends=True)
        if line.startswith(("ppauth", "hint: "))
    ]
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, "".join(kept))


def test_login_and_logout_usage(ppauth_env):
    for args in (("login",), ("login", "--device-code")):
        line, hint = failed(ppauth(*args))
        assert "no app to sign in with" in line and "PPAUTH_CLIENT_ID" in hint
        assert "client_id" in hint and "interactive = true" in hint
    line, hint = failed(ppauth("login", "--timeout", "0"), 2)
    assert "--timeout must be between 0 and 3600" in line
    failed(ppauth("logout"))
    for command in ("login", "logout"):
        assert ok(ppauth(command, "--help")).startswith(f"usage: ppauth {command}")


def test_sources_and_whoami_for_a_managed_identity(ppauth_emulator, ppauth_env):
    emu = ppauth_emulator
    worker = emu.add_managed_identity("worker")
    ppauth_env.set(**emu.managed_identity_env("appservice"), AZURE_CLIENT_ID=worker.client_id)
    text = ok(ppauth("sources"))
    assert f"managed_identity priority 90   ANSWERS: managed_identity {worker.client_id}" in text
    assert "AZURE_CLIENT_ID selects the managed identity" in text  # the env source passes

    who = json.loads(ok(ppauth("whoami", "--json")))
    assert who["app"] == worker.client_id and who["credential"] == "managed_identity"
    assert who["identityType"] == "app" and emu.count("appservice-msi") == 1
