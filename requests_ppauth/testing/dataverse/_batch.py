"""``POST $batch``: reading the multipart/mixed request (change sets, Content-ID),
running each operation through the service's own router, and writing the
multipart/mixed response."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from requests_ppauth.testing._wire import Request, Response
from requests_ppauth.testing.dataverse._context import _API, _Context, _parse_prefer
from requests_ppauth.testing.dataverse._errors import (
    ODataError,
    _common_headers,
    _error,
    _not_found_segment,
)
from requests_ppauth.testing.dataverse._tables import _TableStore


class _Batch(_TableStore):
    """The ``$batch`` route of :class:`~requests_ppauth.testing.dataverse.Dataverse`."""

    if TYPE_CHECKING:

        def _dispatch(self, ctx: _Context, rest: str, claims: Mapping[str, Any]) -> Response:
            """The service's router (:mod:`._service`): each operation goes through it."""

    def _batch(self, ctx: _Context, claims: Mapping[str, Any]) -> Response:
        """``POST $batch``: multipart/mixed operations, change sets all-or-nothing with
        ``$n`` Content-ID references; stops at the first failure unless
        ``Prefer: odata.continue-on-error``."""
        req = ctx.req
        if req.method != "POST":
            raise ctx.no_resource()
        boundary = _boundary(req.headers.get("content-type", ""))
        if boundary is None:
            raise ODataError(
                400,
                "0x0",
                'The batch request must have a "Content-Type" header with a multipart/mixed '
                "media type and a boundary parameter.",
            )
        keep_going = "odata.continue-on-error" in _parse_prefer(req.headers.get("prefer", ""))
        out_boundary = f"batchresponse_{uuid.uuid4()}"
        chunks: list[str] = []
        for headers, body in _mime_parts(req.body.decode("utf-8", "replace"), boundary):
            inner = _boundary(headers.get("content-type", ""))
            if inner is not None:
                failed, text = self._changeset(ctx, claims, body, inner)
            else:
                resp = self._batch_operation(ctx, claims, body, {})
                failed = resp.status >= 400
                text = _http_part(resp, headers.get("content-id"))
            chunks.append(f"--{out_boundary}\r\n{text}")
            if failed and not keep_going:
                break
        payload = "".join(chunks) + f"--{out_boundary}--\r\n"
        content_type = f"multipart/mixed; boundary={out_boundary}"
        return Response(200, payload.encode(), [("Content-Type", content_type), *_common_headers()])

    def _changeset(
        self, ctx: _Context, claims: Mapping[str, Any], body: str, boundary: str
    ) -> tuple[bool, str]:
        snapshot = {
            name: {k: dict(v) for k, v in t.rows.items()} for name, t in self.tables.items()
        }
        ids: dict[str, str] = {}
        answers: list[str] = []
        out = f"changesetresponse_{uuid.uuid4()}"
        for headers, part in _mime_parts(body, boundary):
            content_id = headers.get("content-id")
            resp = self._batch_operation(ctx, claims, part, ids)
            if resp.status >= 400:  # all or nothing: undo, answer the failure alone
                for name, rows in snapshot.items():
                    self.tables[name].rows = rows
                text = f"--{out}\r\n{_http_part(resp, content_id)}--{out}--\r\n"
                return True, f"Content-Type: multipart/mixed; boundary={out}\r\n\r\n{text}"
            location = dict((k.lower(), v) for k, v in resp.headers).get("odata-entityid")
            if content_id and location:
                ids[content_id] = location
            answers.append(f"--{out}\r\n{_http_part(resp, content_id)}")
        text = "".join(answers) + f"--{out}--\r\n"
        return False, f"Content-Type: multipart/mixed; boundary={out}\r\n\r\n{text}"

    def _batch_operation(
        self, ctx: _Context, claims: Mapping[str, Any], text: str, ids: Mapping[str, str]
    ) -> Response:
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        lines = [line for line in head.split("\n") if line.strip()]
        request_line = lines[0].split() if lines else []
        if len(request_line) != 3 or not request_line[2].startswith("HTTP/"):
            return _error(ODataError(400, "0x0", "The batch operation has no request line."))
        method, target, _ = request_line
        if target.startswith("$") and target[1:] in ids:
            target = ids[target[1:]]
        if target.startswith(ctx.req.origin):
            target = target[len(ctx.req.origin) :]
        elif not target.startswith("/"):
            target = f"{ctx.api[len(ctx.req.origin) :]}/{target}"
        path, _, query = target.partition("?")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        sub = Request(
            method=method.upper(),
            path=path,
            query=dict(parse_qsl(query, keep_blank_values=True)),
            headers=headers,
            body=body.strip().encode(),
            listener=ctx.req.listener,
            origin=ctx.req.origin,
        )
        match = _API.match(path)
        if match is None:
            return _error(_not_found_segment(path.lstrip("/").split("/", 1)[0]))
        rest = unquote((match["rest"] or "/")[1:])
        if rest == "$batch":
            return _error(ODataError(400, "0x0", "A $batch cannot contain another $batch."))
        try:
            return self._dispatch(_Context(sub, ctx.api), rest, claims)
        except ODataError as exc:
            return _error(exc)


def _boundary(content_type: str) -> str | None:
    if "multipart/mixed" not in content_type.lower():
        return None
    found = re.search(r'boundary="?([^";,\s]+)"?', content_type, re.IGNORECASE)
    return found.group(1) if found else None


def _mime_parts(text: str, boundary: str) -> list[tuple[dict[str, str], str]]:
    """The parts of a multipart body: (lower-cased part headers, part body)."""
    delimiter = f"--{boundary}"
    raw: list[list[str]] = []
    current: list[str] | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.rstrip() in (delimiter, f"{delimiter}--"):
            if current is not None:
                raw.append(current)
            if line.rstrip() == f"{delimiter}--":
                break
            current = []
        elif current is not None:
            current.append(line)
    parts = []
    for lines in raw:
        block = "\n".join(lines)
        head, _, body = block.partition("\n\n")
        headers = {}
        for line in head.split("\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, body))
    return parts


def _http_part(resp: Response, content_id: str | None) -> str:
    """One operation's response as a batch part (``application/http``)."""
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    status = f"HTTP/1.1 {resp.status} {HTTPStatus(resp.status).phrase}"
    lines = [*head, "", status, *(f"{k}: {v}" for k, v in resp.headers), ""]
    return "\r\n".join(lines) + "\r\n" + resp.body.decode() + "\r\n"
