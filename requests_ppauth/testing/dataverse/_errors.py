"""Dataverse's OData error shape (``{"error": {"code": "0x...", "message": ...}}``) and
the headers every Dataverse response carries, so each route raises :class:`ODataError`
and one place turns it into the response the real service sends."""

from __future__ import annotations

import json
import uuid

from requests_ppauth.testing._wire import Response


class ODataError(ValueError):
    """An error Dataverse answers in its OData shape (a ValueError: the admin API's 400)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found_segment(segment: str) -> ODataError:
    return ODataError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


def _no_property(name: str, type_name: str) -> ODataError:
    return ODataError(
        400, "0x0", f"Could not find a property named '{name}' on type '{type_name}'."
    )


def _not_implemented(what: str) -> ODataError:
    return ODataError(501, "NotImplemented", f"The emulator does not implement {what}.")


def _common_headers() -> list[tuple[str, str]]:
    request_id = str(uuid.uuid4())
    return [
        ("OData-Version", "4.0"),
        ("REQ_ID", request_id),
        ("x-ms-service-request-id", request_id),
    ]


def _error(exc: ODataError, extra: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
    headers = [
        ("Content-Type", "application/json; odata.metadata=minimal"),
        *_common_headers(),
        *(extra or []),
    ]
    return Response(exc.status, body, headers)
