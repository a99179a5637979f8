"""One request as the routes see it: the URL shapes (``/api/data/v9.x/...``, a
segment with its key and tail), the ``Prefer`` header, and :class:`_Context` (the API
root URL, query options, JSON body and the answers built from them)."""

from __future__ import annotations

import json
import re
from typing import Any

from requests_ppauth.testing._wire import Request, Response
from requests_ppauth.testing.dataverse._errors import ODataError, _common_headers, _not_implemented
from requests_ppauth.testing.dataverse._tables import FORMATTED_VALUE

_API = re.compile(r"^/api/data/(?P<version>v9\.[0-2])(?P<rest>/.*)?$")
_SEGMENT = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_.]*)(?:\((?P<key>[^)]*)\))?(?:/(?P<tail>.*))?$"
)


def _parse_prefer(header: str) -> dict[str, str]:
    prefs: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name:
            prefs[name.strip().lower()] = value.strip().strip('"')
    return prefs


class _Context:
    """One request's view: the API root URL, the query options, the JSON body."""

    def __init__(self, req: Request, api: str) -> None:
        self.req = req
        self.api = api
        self.query = req.query

    def json(
        self, status: int, payload: Any, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        return Response(
            status,
            json.dumps(payload).encode(),
            [
                ("Content-Type", "application/json; odata.metadata=minimal"),
                *_common_headers(),
                *(headers or []),
            ],
        )

    def body(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.req.body or b"{}")
        except ValueError:
            raise ODataError(400, "0x80040203", "The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise ODataError(400, "0x80040203", "The request body must be a JSON object.")
        return payload

    def formatted(self) -> bool:
        """Whether ``Prefer: odata.include-annotations`` asks for formatted values."""
        pattern = _parse_prefer(self.req.headers.get("prefer", "")).get("odata.include-annotations")
        if not pattern:
            return False
        wanted = [p.strip() for p in pattern.split(",")]
        return (
            any(p in ("*", FORMATTED_VALUE, "OData.Community.Display.V1.*") for p in wanted)
            and f"-{FORMATTED_VALUE}" not in wanted
        )

    def annotations_applied(self) -> str:
        pattern = _parse_prefer(self.req.headers.get("prefer", ""))["odata.include-annotations"]
        return f'odata.include-annotations="{pattern}"'

    def no_resource(self) -> ODataError:
        url = self.req.origin + self.req.path
        return ODataError(
            404, "", f"No HTTP resource was found that matches the request URI '{url}'."
        )

    def reject_options(self, allowed: set[str]) -> None:
        """Refuse ``$skip`` as Dataverse does, and what the emulator does not implement."""
        for name in self.query:
            if not name.startswith("$") or name in allowed:
                continue
            if name == "$skip":
                raise ODataError(400, "0x80060888", "The query parameter $skip is not supported")
            if name in (
                "$expand",
                "$apply",
                "$search",
                "$format",
                "$select",
                "$filter",
                "$orderby",
                "$top",
                "$count",
                "$skiptoken",
            ):
                raise _not_implemented(f"{name} here")
            raise ODataError(
                400,
                "0x80060888",
                f"The query parameter {name} is not supported",
            )
