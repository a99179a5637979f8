"""Fault injection: latency, throttling, server errors and dropped connections."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from requests_ppauth.testing._wire import Request, Response


@dataclass
class Fault:
    """One rule. ``endpoint`` is an endpoint name (``token``, ``discovery``, ``vault``,
    ``environments``, ...), a listener name (``identity``, ``api``, ``vault``,
    ``foreign``) or ``*``.

    It fires for the next ``times`` matching requests, or for a ``fraction`` of them
    (each request drawn independently), or for every one when both are ``None``.
    A firing fault adds ``latency`` seconds, then drops the connection (``drop``),
    answers ``status`` (with ``Retry-After`` when given), or lets the request through.
    """

    endpoint: str = "*"
    status: int | None = None
    retry_after: int | None = None
    latency: float = 0.0
    drop: bool = False
    times: int | None = 1
    fraction: float | None = None
    fired: int = 0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)
        if self.fraction is not None:
            self.times = None

    def matches(self, req: Request) -> bool:
        """Whether this rule targets ``req``."""
        return self.endpoint in ("*", req.endpoint, req.listener)

    def describe(self) -> str:
        """Short text for the request log."""
        if self.drop:
            return "drop"
        if self.status:
            return f"status {self.status}"
        return f"latency {self.latency}s"

    def response(self, req: Request) -> Response:
        """The error this fault answers with, shaped for the listener."""
        headers = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
        status = self.status or 500
        body: dict[str, Any]
        if req.listener == "identity":
            code, error = (
                (50196, "temporarily_unavailable") if status == 429 else (50000, "server_error")
            )
            body = {
                "error": error,
                "error_codes": [code],
                "error_description": f"AADSTS{code}: injected fault (HTTP {status}).",
            }
        else:
            body = {
                "error": {
                    "code": "TooManyRequests" if status == 429 else "ServiceError",
                    "message": f"injected fault (HTTP {status})",
                }
            }
        return Response.json(status, body, headers)


class FaultPlan:
    """The active rules, consulted in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Activate ``fault``."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._faults.clear()

    def pick(self, req: Request) -> Fault | None:
        """The first rule that fires for ``req``; used-up rules are removed."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(req):
                    continue
                if fault.fraction is not None:
                    if fault._rng.random() >= fault.fraction:
                        continue
                elif fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                fault.fired += 1
                return fault
        return None
