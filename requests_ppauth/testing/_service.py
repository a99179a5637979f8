"""The base of an emulated service: one per module (:mod:`._management`,
:mod:`.dataverse`, :mod:`._keyvault`, :mod:`._arm`), so each real API the emulator
answers is read in one place, next to the tests that drive Microsoft's own client for
it against the emulator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from requests_ppauth.testing._resources import Resources
    from requests_ppauth.testing._wire import Request, Response


class Service:
    """An emulated service on one of the emulator's listeners.

    ``route(req)`` answers the paths the service owns and returns None for any other
    (the next service, then the listener's own routes, get it). ``admin_verbs()``
    adds verbs to the emulator's admin API (``POST /_emulator/<verb>``), each the same
    as a Python method, JSON in and out."""

    #: the listeners ("api", "vault") whose requests :meth:`route` is offered
    listeners: tuple[str, ...] = ("api",)

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    def route(self, req: Request) -> Response | None:
        """The response for ``req``, or None when the path is not this service's."""
        return None

    def admin_verbs(self) -> Mapping[str, Callable[..., Any]]:
        """Admin API verbs this service adds (name → callable taking JSON params)."""
        return {}
