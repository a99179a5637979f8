"""``python -m requests_ppauth.testing`` as a separate process, driven over HTTPS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import msal
import pytest
import requests

import requests_ppauth
from requests_ppauth._http import IdentityHttpClient

# where the package lives, so the child imports this checkout whatever its cwd
PACKAGE_ROOT = str(Path(requests_ppauth.__file__).resolve().parent.parent)
SCOPE = "https://service.powerapps.com//.default"


def readline(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The next stdout line, or fail (with stderr) if none comes within ``timeout``."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line or not line[0]:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"no output from the emulator process; stderr:\n{err}")
    return line[0]


@pytest.fixture
def start():
    procs: list[subprocess.Popen] = []

    def _start(*args: str) -> subprocess.Popen:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "requests_ppauth.testing", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the emulator did not exit within 5 s of SIGTERM")
    return proc.returncode, err


def test_json_mode_serves_tokens_counts_and_stops_cleanly_on_sigterm(start):
    proc = start("--json")
    info = json.loads(readline(proc))

    assert info["authority"] == f"{info['authority_host']}/{info['sample']['tenant_id']}"
    assert info["admin_url"] == f"{info['authority_host']}/_emulator"
    ca = info["ca_bundle"]
    assert Path(ca).is_file()
    assert "BEGIN CERTIFICATE" in Path(ca).read_text()
    assert "certificate" not in info["sample"]

    s = info["sample"]
    netloc = info["authority_host"].removeprefix("https://")
    app = msal.ConfidentialClientApplication(
        s["client_id"],
        client_credential=s["client_secret"],
        authority=info["authority"],
        instance_discovery=False,
        http_client=IdentityHttpClient(verify=ca, authority_netlocs=(netloc,)),
    )
    result = app.acquire_token_for_client([SCOPE])
    assert "access_token" in result, result

    resp = requests.get(
        f"{info['api_url']}/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments",
        params={"api-version": "2020-10-01"},
        headers={"Authorization": f"Bearer {result['access_token']}"},
        verify=ca,
        timeout=10,
    )
    assert resp.status_code == 200

    counts = requests.post(f"{info['admin_url']}/counts", verify=ca, timeout=10)
    assert counts.status_code == 200
    assert counts.json() == {"result": {"discovery": 1, "token": 1, "environments": 1}}

    code, err = stop(proc)
    assert code == 0, err
    assert not Path(ca).exists()
    assert not Path(ca).parent.exists()


def test_admin_api_drives_the_process(start):
    proc = start("--json")
    info = json.loads(readline(proc))
    ca, admin = info["ca_bundle"], info["admin_url"]

    def call(verb: str, **params):
        resp = requests.post(f"{admin}/{verb}", json=params, verify=ca, timeout=10)
        return resp.status_code, resp.json()

    assert call("inject", endpoint="token", status=503, times=1) == (200, {"result": None})
    token_url = f"{info['authority']}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": info["sample"]["client_id"],
        "client_secret": info["sample"]["client_secret"],
        "scope": SCOPE,
    }
    assert requests.post(token_url, data=form, verify=ca, timeout=10).status_code == 503
    assert requests.post(token_url, data=form, verify=ca, timeout=10).status_code == 200

    status, body = call("requests", endpoint="token")
    assert status == 200
    assert [(r["status"], r["fault"]) for r in body["result"]] == [(503, "status 503"), (200, None)]
    assert call("info")[1]["result"] == info
    status, body = call("no_such_verb")
    assert status == 400
    assert "no_such_verb" in body["error"]

    code, err = stop(proc)
    assert code == 0, err


def test_token_lifetime_option(start):
    proc = start("--json", "--token-lifetime", "120")
    info = json.loads(readline(proc))
    ca = info["ca_bundle"]
    form = {
        "grant_type": "client_credentials",
        "client_id": info["sample"]["client_id"],
        "client_secret": info["sample"]["client_secret"],
        "scope": SCOPE,
    }
    resp = requests.post(f"{info['authority']}/oauth2/v2.0/token", data=form, verify=ca, timeout=10)
    assert resp.json()["expires_in"] == 120
    assert stop(proc)[0] == 0


def test_plain_output_lists_the_urls(start):
    proc = start()
    lines: list[str] = []
    while not lines or lines[-1] != "Ctrl-C to stop.":
        lines.append(readline(proc).rstrip("\n"))
        assert len(lines) < 50, lines

    fields = dict(line.strip().split(None, 1) for line in lines[:-1])
    for key in ("authority_host", "authority", "api_url", "vault_url", "admin_url"):
        assert fields[key].startswith("https://127.0.0.1:"), fields
    assert fields["foreign_url"].startswith("https://localhost:")
    ports = {fields[k].rsplit(":", 1)[1] for k in ("authority_host", "api_url", "vault_url")}
    assert len(ports) == 3  # separate listeners
    assert fields["authority"].endswith(fields["tenant_id"])
    assert fields["username"] == "user@contoso.onmicrosoft.com"
    ca = fields["ca_bundle"]
    assert Path(ca).is_file()
    # the printed URLs really serve
    resp = requests.get(
        f"{fields['authority']}/v2.0/.well-known/openid-configuration", verify=ca, timeout=10
    )
    assert resp.status_code == 200

    code, err = stop(proc)
    assert code == 0, err
    assert not Path(ca).exists()


def test_sigint_stops_it_too(start):
    proc = start("--json")
    ca = json.loads(readline(proc))["ca_bundle"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0
    assert not Path(ca).exists()
