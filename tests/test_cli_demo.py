"""`ppauth demo`, `ppauth emulator` and `ppauth register-app`, end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.test_cli import (
    ROOT,
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    failed,
    ok,
    ppauth,
)

# -- demo -------------------------------------------------------------------------------------


def test_demo_small_batch_json(ppauth_env):
    proc = ppauth("demo", "--workers", "2", "--calls", "5", "--json")
    report = json.loads(ok(proc))

    assert report["ok"] is True
    assert report["calls"] == 10 and report["succeeded"] == 10 and report["failed"] == 0
    assert report["token_requests"] == 1
    assert 0 < report["auth_overhead_us"] < 1000
    assert report["cache"].endswith("cache.db")
    assert not os.path.exists(report["cache"])  # the temp directory is gone
    assert re.fullmatch(r"10/10 calls in \d+\.\d s\n", proc.stderr)  # one plain line, no TTY
    # the demo never touched the caller's configuration or cache
    assert not ppauth_env.config_path.exists() and not ppauth_env.cache_dir.exists()


def test_demo_with_the_defaults(ppauth_env):
    started = time.monotonic()
    proc = ppauth("demo")
    out = ok(proc)

    assert "8 processes x 50 API calls" in out
    assert "400 (400 succeeded, 0 failed)" in out
    assert "1 to the identity provider (expected 1)" in out
    assert "µs per request" in out and "OK: 400/400 calls, 1 token request" in out
    assert time.monotonic() - started < 45


def test_demo_progress_and_keep(ppauth_env):
    proc = ppauth("demo", "--workers", "1", "--calls", "3", "--progress", "--keep", "--json")
    report = json.loads(ok(proc))
    try:
        # live redraws (text mode turned each \r into a newline)
        assert re.search(r"^\[#{30}\] 3/3 calls", proc.stderr, re.M)
        assert len(proc.stderr.splitlines()) >= 2
        assert os.path.exists(report["cache"])
        assert stat_mode(report["config"]) == 0o600
    finally:
        import shutil

        shutil.rmtree(os.path.dirname(report["config"]), ignore_errors=True)


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


def test_demo_usage_error():
    failed(ppauth("demo", "--workers", "0"), 2)


# -- emulator -------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_emulator_runs_until_a_signal(sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "requests_ppauth.cli", "emulator", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        env = info["environment"]
        resp = requests.get(
            f"{env['PPAUTH_AUTHORITY_HOST']}/{env['PPAUTH_TENANT_ID']}/v2.0/.well-known/"
            "openid-configuration",
            verify=info["ca_bundle"],
            timeout=30,
        )
        assert resp.status_code == 200
        assert info["sample"]["client_secret"] == env["PPAUTH_CLIENT_SECRET"]
        # a throwaway token cache: following the exports never fills the real one
        assert os.path.isdir(env["PPAUTH_CACHE_DIR"])
        assert "ppauth-emulator-cache-" in env["PPAUTH_CACHE_DIR"]
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert "emulator stopped" in proc.stderr.read()
        assert not os.path.exists(info["ca_bundle"])  # cleaned up on the way out
        assert not os.path.exists(env["PPAUTH_CACHE_DIR"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_emulator_text_output_then_the_environment_it_prints_works(ppauth_env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "requests_ppauth.cli", "emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "Ctrl-C to stop.":
            lines.append(proc.stdout.readline().rstrip("\n"))
        text = "\n".join(lines)
        assert "ca_bundle" in text and "admin_password" in text
        export = next(line for line in lines if line.strip().startswith("export "))
        for assignment in export.split()[1:]:
            name, _, value = assignment.partition("=")
            ppauth_env.set(**{name: value.strip("'")})
        ok(ppauth("token"))
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


# -- register-app -------------------------------------------------------------------------------


@pytest.fixture
def admin(ppauth_emulator, ppauth_env):
    """PPAUTH_* for the emulator's tenant admin, through its public client app."""
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "password")
    ppauth_env.set(
        PPAUTH_USERNAME=emu.sample.admin_username, PPAUTH_PASSWORD=emu.sample.admin_password
    )
    return emu


def test_register_list_remove(admin):
    emu, client = admin, admin.sample.client_id
    api = ["--api-url", emu.api_url]

    out = ok(ppauth("register-app", "--client-id", client, *api))
    assert f"registered {client}" in out and emu.sample.tenant_id in out
    listed = json.loads(ok(ppauth("register-app", "--list", "--json", *api)))
    assert [a["applicationId"] for a in listed["value"]] == [client]
    assert f"1 app registered\n  {client}" in ok(ppauth("register-app", "--list", *api))
    assert "removed" in ok(ppauth("register-app", "--remove", "--client-id", client, *api))
    assert json.loads(ok(ppauth("register-app", "--list", "--json", *api)))["value"] == []
    assert emu.count("token") == 1  # one admin sign-in, then the cache


def test_register_app_needs_an_admin_user(admin, ppauth_env):
    emu = admin
    ppauth_env.set(PPAUTH_USERNAME=emu.sample.username, PPAUTH_PASSWORD=emu.sample.password)
    line, hint = failed(
        ppauth("register-app", "--client-id", emu.sample.client_id, "--api-url", emu.api_url),
        secrets=(emu.sample.password,),
    )
    assert "HTTP 403" in line and "administrator" in hint

    ppauth_env.use_emulator(emu, "secret")
    ppauth_env.set(PPAUTH_USERNAME=None, PPAUTH_PASSWORD=None)
    line, hint = failed(
        ppauth("register-app", "--client-id", emu.sample.client_id, "--api-url", emu.api_url)
    )
    assert "needs a tenant administrator's user sign-in" in line and "client secret" in line
    assert emu.count("token") == 1  # the service principal was refused before signing in


def test_register_app_usage():
    failed(ppauth("register-app"), 2)
    failed(ppauth("register-app", "--client-id", "not-a-guid"), 2)
