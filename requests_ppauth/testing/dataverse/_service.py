"""The :class:`Dataverse` service: routing (``/api/data/v9.x/...`` to the route
mixins), the token check and its challenge, service protection limits, ``WhoAmI``, and
the state API tests and the admin API use."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from requests_ppauth.testing._resources import Resources, TokenRejectedError
from requests_ppauth.testing._service import Service
from requests_ppauth.testing._wire import Request, Response
from requests_ppauth.testing.dataverse._batch import _Batch
from requests_ppauth.testing.dataverse._context import _API, _SEGMENT, _Context
from requests_ppauth.testing.dataverse._errors import (
    ODataError,
    _common_headers,
    _error,
    _not_found_segment,
    _not_implemented,
)
from requests_ppauth.testing.dataverse._metadata import _Metadata
from requests_ppauth.testing.dataverse._rows import _Rows
from requests_ppauth.testing.dataverse._tables import (
    _SYSTEM_COLUMNS,
    ATTRIBUTE_TYPES,
    THROTTLE_MESSAGES,
    Table,
    _entity_set_name,
    _Throttle,
)

#: the audience a Dataverse token may carry besides the org URL the client called
DATAVERSE_RESOURCE = "https://org.crm.dynamics.com"
_LOGICAL = re.compile(r"^[a-z_][a-z0-9_]*$")


class Dataverse(_Metadata, _Rows, _Batch, Service):
    """See the package docstring (:mod:`requests_ppauth.testing.dataverse`).
    State: :attr:`tables` (logical name → :class:`Table`)."""

    def __init__(self, resources: Resources) -> None:
        super().__init__(resources)
        self.tables: dict[str, Table] = {}
        self.throttles: list[_Throttle] = []
        #: requests answered 429 by :meth:`throttle`
        self.throttled = 0
        self._version = 1000
        self.add_table(
            "account",
            attributes={
                "name": "String",
                "accountnumber": "String",
                "telephone1": "String",
                "emailaddress1": "String",
                "description": "Memo",
                "numberofemployees": "Integer",
                "revenue": "Money",
                "creditonhold": "Boolean",
                "accountcategorycode": "Picklist",
                "statecode": "State",
            },
            options={
                "accountcategorycode": {1: "Preferred Customer", 2: "Standard"},
                "statecode": {0: "Active", 1: "Inactive"},
            },
            display_name="Account",
        )
        self.add_table(
            "contact",
            primary_name="fullname",
            attributes={
                "fullname": "String",
                "firstname": "String",
                "lastname": "String",
                "emailaddress1": "String",
                "telephone1": "String",
                "birthdate": "DateTime",
                "preferredcontactmethodcode": "Picklist",
                "statecode": "State",
            },
            options={
                "preferredcontactmethodcode": {
                    1: "Any",
                    2: "Email",
                    3: "Phone",
                    4: "Fax",
                    5: "Mail",
                },
                "statecode": {0: "Active", 1: "Inactive"},
            },
            display_name="Contact",
        )

    # -- state, from tests and the admin API ----------------------------------------
    def add_table(
        self,
        logical_name: str,
        entity_set_name: str | None = None,
        primary_id: str | None = None,
        attributes: Mapping[str, str] | Sequence[str] | None = None,
        primary_name: str | None = "name",
        schema_name: str | None = None,
        display_name: str | None = None,
        options: Mapping[str, Mapping[int, str]] | None = None,
        alternate_keys: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, Any]:
        """Define a table. ``attributes`` maps logical column names to Dataverse
        attribute types (``String``, ``Memo``, ``Integer``, ``BigInt``, ``Decimal``,
        ``Money``, ``Double``, ``Boolean``, ``DateTime``, ``Picklist``,
        ``State``, ``Uniqueidentifier``), or lists names (all ``String``); ``options``
        gives a ``Picklist``/``State`` column its choices (value → label);
        ``alternate_keys`` names keys (key name → columns) that rows can be addressed
        and upserted by, as ``accounts(accountnumber='A1')``. The primary id
        (``<logical_name>id`` by default), the primary name column (``name`` by
        default; ``None`` for none), ``createdon``, ``modifiedon`` and
        ``versionnumber`` are added. Returns the table's definition."""
        if not _LOGICAL.match(logical_name):
            raise ValueError(f"logical names are lower case: {logical_name!r}")
        columns: dict[str, str] = (
            dict(attributes)
            if isinstance(attributes, Mapping)
            else dict.fromkeys(attributes or (), "String")
        )
        pid = primary_id or f"{logical_name}id"
        columns[pid] = "Uniqueidentifier"
        if primary_name:
            columns.setdefault(primary_name, "String")
        columns.update(_SYSTEM_COLUMNS)
        for name, kind in columns.items():
            if not _LOGICAL.match(name):
                raise ValueError(f"column logical names are lower case: {name!r}")
            if kind not in ATTRIBUTE_TYPES:
                raise ValueError(f"unknown attribute type {kind!r} for {name!r}")
        choices = {
            name: {int(v): str(label) for v, label in values.items()}
            for name, values in (options or {}).items()
        }
        for name in choices:
            if columns.get(name) not in ("Picklist", "State"):
                raise ValueError(f"options are for Picklist or State columns: {name!r}")
        keys = {str(k): [str(c) for c in cols] for k, cols in (alternate_keys or {}).items()}
        for key_name, key_columns in keys.items():
            if not key_columns or any(c not in columns for c in key_columns):
                raise ValueError(f"alternate key {key_name!r}: unknown columns {key_columns!r}")
        table = Table(
            logical_name=logical_name,
            entity_set_name=entity_set_name or _entity_set_name(logical_name),
            primary_id=pid,
            primary_name=primary_name,
            schema_name=schema_name or logical_name,
            display_name=display_name or logical_name,
            attributes=columns,
            options=choices,
            keys=keys,
        )
        with self.resources.directory.lock:
            if any(
                t.entity_set_name == table.entity_set_name and t.logical_name != logical_name
                for t in self.tables.values()
            ):
                raise ValueError(f"entity set {table.entity_set_name!r} is taken")
            self.tables[logical_name] = table
        return table.definition()

    def add_rows(self, table: str, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert rows (column → value; the primary id may be given) and return their
        ids. Values are checked as a ``POST`` would check them."""
        with self.resources.directory.lock:
            t = self._table(table)
            return [self._insert(t, dict(row)) for row in rows]

    def rows(self, table: str) -> list[dict[str, Any]]:
        """A copy of a table's rows, in insertion order."""
        with self.resources.directory.lock:
            return [dict(r) for r in self._table(table).rows.values()]

    def throttle(
        self,
        times: int | None = 1,
        retry_after: int = 2,
        code: str = "0x80072322",
        window: bool = False,
    ) -> None:
        """Answer the next ``times`` Dataverse requests (every one with ``None``)
        with a service protection 429: ``Retry-After: retry_after`` and ``code``
        (``0x80072322`` requests, ``0x80072321`` execution time, ``0x80072326``
        concurrency). ``window=True`` plays the real limit instead: every request in
        the next ``retry_after`` seconds is refused, ``Retry-After`` saying what is
        left of the wait."""
        if code not in THROTTLE_MESSAGES:
            raise ValueError(f"unknown service protection code {code!r}")
        until = time.monotonic() + float(retry_after) if window else None
        with self.resources.directory.lock:
            self.throttles.append(_Throttle(times, int(retry_after), code, until))

    def clear_throttle(self) -> None:
        """Lift every service protection limit set by :meth:`throttle`."""
        with self.resources.directory.lock:
            self.throttles.clear()

    def admin_verbs(self) -> Mapping[str, Callable[..., Any]]:
        """``dataverse_add_table``, ``dataverse_add_rows``, ``dataverse_rows``,
        ``dataverse_throttle``, ``dataverse_clear_throttle``."""
        return {
            "dataverse_add_table": self.add_table,
            "dataverse_add_rows": self.add_rows,
            "dataverse_rows": self.rows,
            "dataverse_throttle": self.throttle,
            "dataverse_clear_throttle": self.clear_throttle,
        }

    # -- routing ----------------------------------------------------------------------
    def route(self, req: Request) -> Response | None:
        """Answer ``/api/data/v9.x/...``; None for any other path."""
        match = _API.match(req.path)
        if match is None:
            return None
        prefix = f"/api/data/{match['version']}"
        rest = unquote((match["rest"] or "/")[1:])
        head = rest.split("(", 1)[0].split("/", 1)[0]
        req.endpoint = (
            "whoami"
            if head == "WhoAmI"
            else "dataverse-metadata"
            if head == "EntityDefinitions"
            else "dataverse"
        )
        try:
            claims = self.resources.validate(req, (req.origin, DATAVERSE_RESOURCE))
        except TokenRejectedError as exc:
            if getattr(exc, "claims", None):  # continuous access evaluation: the shared shape
                return self.resources._challenge(exc)
            where = f"{self.resources.authority_origin}/{self.resources.default_tenant}"
            challenge = (
                f"Bearer authorization_uri={where}/oauth2/authorize, resource_id={req.origin}/"
            )
            return Response(401, b"", [("WWW-Authenticate", challenge), *_common_headers()])
        with self.resources.directory.lock:
            now = time.monotonic()
            rule = next((r for r in self.throttles if r.active(now)), None)
            if rule is not None:
                if rule.times is not None and rule.until is None:
                    rule.times -= 1
                self.throttled += 1
                return _error(
                    ODataError(429, rule.code, THROTTLE_MESSAGES[rule.code]),
                    [("Retry-After", str(rule.wait(now)))],
                )
        ctx = _Context(req, f"{req.origin}{prefix}")
        try:
            with self.resources.directory.lock:
                return self._dispatch(ctx, rest, claims)
        except ODataError as exc:
            return _error(exc)

    def _dispatch(self, ctx: _Context, rest: str, claims: Mapping[str, Any]) -> Response:
        req = ctx.req
        if rest == "":
            if req.method != "GET":
                raise ctx.no_resource()
            return ctx.json(
                200,
                {
                    "@odata.context": f"{ctx.api}/$metadata",
                    "value": [
                        {"name": t.entity_set_name, "kind": "EntitySet", "url": t.entity_set_name}
                        for t in self.tables.values()
                    ],
                },
            )
        if rest == "$batch":
            return self._batch(ctx, claims)
        if rest == "$metadata":
            raise _not_implemented(rest)
        match = _SEGMENT.match(rest)
        if match is None:
            raise _not_found_segment(rest.split("/", 1)[0])
        name, key, tail = match["name"], match["key"], match["tail"]
        if name == "WhoAmI":
            if req.method != "GET" or tail:
                raise ctx.no_resource()
            return ctx.json(200, _whoami_body(ctx.api, claims))
        if name == "EntityDefinitions":
            return self._metadata(ctx, key, tail)
        table = next((t for t in self.tables.values() if t.entity_set_name == name), None)
        if table is None:
            if name == "BulkDelete" and req.method == "POST" and not tail:
                return self._bulk_delete(ctx)
            if name in ("CreateEntities", "RetrieveMetadataChanges"):
                raise _not_implemented(name)
            raise _not_found_segment(name)
        return self._entity_set(ctx, table, key, tail)


def _whoami_body(api: str, claims: Mapping[str, Any]) -> dict[str, Any]:
    oid = str(claims.get("oid"))
    return {
        "@odata.context": f"{api}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
        "BusinessUnitId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bu:{claims.get('tid')}")),
        "UserId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"user:{oid}")),
        "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"org:{claims.get('tid')}")),
    }
