"""The API call the cache tests make, as a user's code makes it."""

from __future__ import annotations

from typing import Any

import requests

from requests_ppauth import PowerPlatformAuth
from tests._cache_worker import BAP_PATH, SCOPE


def auth_for(emu, **options: Any) -> PowerPlatformAuth:
    """Configured by the environment (``use_emulator``) unless ``credential=`` is given,
    as the worker processes configure theirs."""
    return PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: SCOPE}, **options)


def api_get(emu, auth: PowerPlatformAuth) -> requests.Response:
    r = requests.get(emu.api_url + BAP_PATH, auth=auth, verify=emu.ca_bundle)
    assert r.status_code == 200, r.text
    return r


def sent_token(r: requests.Response) -> str:
    return str(r.request.headers["Authorization"]).removeprefix("Bearer ")
