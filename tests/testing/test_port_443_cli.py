"""``ppauth emulator --identity-port 443``: the command serves Entra ID on the default
https port (its own module: the port-443 lock is held per module, see test_port_443)."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from tests.testing.test_port_443 import port_443_lock

PORT_443 = ("--identity-port", "443")


def test_the_emulator_command_serves_entra_id_on_443():
    with port_443_lock():
        proc = subprocess.Popen(
            [sys.executable, "-m", "requests_ppauth.cli", "emulator", "--json", *PORT_443],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                proc.wait(10)
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"the emulator did not start: {err[-1000:]}")
            info = json.loads(line)
            assert info["authority_host"] == "https://127.0.0.1"
            env = info["environment"]
            resp = requests.get(
                f"https://127.0.0.1/{env['PPAUTH_TENANT_ID']}/v2.0/.well-known/openid-configuration",
                verify=info["ca_bundle"],
                timeout=30,
            )
            assert resp.status_code == 200
        finally:
            proc.terminate()
            proc.wait(20)
