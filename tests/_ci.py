"""What the CI federation tests (GitHub Actions, Azure Pipelines) share: an auth for
the emulator's API, one call to it, and ``ppauth`` run as a job's step would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import requests

from requests_ppauth import PowerPlatformAuth
from requests_ppauth.testing import Emulator

APPS_SCOPE = "https://service.powerapps.com//.default"
BAP_PATH = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)


def api_auth(emu: Emulator, **kwargs: Any) -> PowerPlatformAuth:
    """``PowerPlatformAuth()`` with nothing but the emulator's API host allowed."""
    return PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: APPS_SCOPE}, **kwargs)


def get_envs(emu: Emulator, auth: PowerPlatformAuth) -> requests.Response:
    """The admin environments list: one authenticated API call."""
    return requests.get(emu.api_url + BAP_PATH, auth=auth, verify=emu.ca_bundle, timeout=30)


def ppauth(*args: str) -> subprocess.CompletedProcess[str]:
    """``ppauth ARGS`` in a fresh interpreter with this process's environment (the job's)."""
    return subprocess.run(
        [sys.executable, "-m", "requests_ppauth.cli", *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=90,
    )
