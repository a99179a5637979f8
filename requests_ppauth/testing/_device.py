"""The device authorization grant (RFC 8628) as Entra ID runs it.

``/devicecode`` hands out a user code; polls of the token endpoint answer
``authorization_pending`` until a test approves the code (standing in for the
person at the browser), ``slow_down`` when polled faster than the interval,
``authorization_declined`` or ``expired_token`` as the test decides.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, field

from requests_ppauth.testing._aadsts import EntraError

_ALPHABET = string.ascii_uppercase.replace("I", "").replace("O", "") + "23456789"


@dataclass
class DeviceCode:
    """One pending sign-in."""

    user_code: str
    device_code: str = field(repr=False)
    client_id: str
    tenant_id: str
    scope: str
    expires_at: float
    interval: int
    approved_by: str | None = None
    declined: bool = False
    last_poll: float = 0.0
    slow_downs: int = 0
    redeemed: bool = False


class DeviceFlows:
    """Pending device codes, by device code."""

    def __init__(self) -> None:
        self.codes: dict[str, DeviceCode] = {}
        self.interval = 1
        self.lifetime = 900

    def start(self, client_id: str, tenant_id: str, scope: str) -> DeviceCode:
        """A new code for ``client_id`` asking for ``scope``."""
        user_code = "".join(secrets.choice(_ALPHABET) for _ in range(9))
        code = DeviceCode(
            user_code=user_code,
            device_code="DC." + secrets.token_urlsafe(32),
            client_id=client_id,
            tenant_id=tenant_id,
            scope=scope,
            expires_at=time.time() + self.lifetime,
            interval=self.interval,
        )
        self.codes[code.device_code] = code
        return code

    def by_user_code(self, user_code: str) -> DeviceCode:
        """The code a person would type; KeyError if unknown."""
        for code in self.codes.values():
            if code.user_code == user_code.upper().replace("-", ""):
                return code
        raise KeyError(f"no device code {user_code!r}")

    def poll(self, device_code: str, client_id: str) -> DeviceCode:
        """The approved code, or the Entra error a poll gets now."""
        code = self.codes.get(device_code)
        if code is None or code.client_id.lower() != client_id.lower() or code.redeemed:
            raise EntraError(70000)
        now = time.time()
        if now >= code.expires_at:
            raise EntraError(70020)
        if code.declined:
            raise EntraError(70016, reason="declined")
        too_soon = code.last_poll and now - code.last_poll < code.interval - 0.5
        code.last_poll = now
        if code.slow_downs > 0 or too_soon:
            code.slow_downs = max(0, code.slow_downs - 1)
            raise EntraError(70022)
        if code.approved_by is None:
            raise EntraError(70016, reason="pending")
        code.redeemed = True
        return code
