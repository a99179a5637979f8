"""Entity sets: rows created, read, listed (``$filter``, ``$orderby``, ``$top``,
``$count``, paging with a paging-cookie ``$skiptoken``), updated and upserted (by primary
or alternate key), deleted, the ``*Multiple`` actions, and ``BulkDelete``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlencode

from requests_ppauth.testing._wire import Response
from requests_ppauth.testing.dataverse._context import _Context, _parse_prefer
from requests_ppauth.testing.dataverse._errors import (
    ODataError,
    _common_headers,
    _no_property,
    _not_found_segment,
    _not_implemented,
)
from requests_ppauth.testing.dataverse._filter import (
    _GUID,
    _NUMBER,
    _comparable,
    _evaluate,
    _Node,
    _order,
    _tokenize,
    parse_filter,
)
from requests_ppauth.testing.dataverse._tables import (
    FORMATTED_VALUE,
    Table,
    _formatted,
    _now_iso,
    _TableStore,
)

MAX_PAGE_SIZE = 5000


class _Rows(_TableStore):
    """The entity-set routes and ``BulkDelete`` of
    :class:`~requests_ppauth.testing.dataverse.Dataverse`."""

    # -- BulkDelete -------------------------------------------------------------------
    def _bulk_delete(self, ctx: _Context) -> Response:
        """The ``BulkDelete`` action as the SDK sends it (``QuerySet`` of
        ``QueryExpression`` with ``Equal``/``NotEqual``/``In``/``NotIn``/``Null``/
        ``NotNull`` conditions). Dataverse runs it as an asynchronous job; here the job
        is done when the response arrives."""
        queries = ctx.body().get("QuerySet")
        if not isinstance(queries, list) or not queries:
            raise ODataError(400, "0x80040203", "QuerySet: at least one query is required.")
        doomed: list[tuple[Table, str]] = []
        for query in queries:
            name = str(query.get("EntityName", ""))
            table = self.tables.get(name)
            if table is None:
                raise ODataError(
                    400, "0x80040217", f"The entity with a name = '{name}' was not found."
                )
            criteria = query.get("Criteria") or {}
            conditions = criteria.get("Conditions") or []
            if criteria.get("Filters"):
                raise _not_implemented("nested filters in BulkDelete")
            use_or = str(criteria.get("FilterOperator", "And")).lower() == "or"
            tests = [_condition(table, c) for c in conditions]
            for rid, row in table.rows.items():
                hits = [t(row) for t in tests]
                if not tests or (any(hits) if use_or else all(hits)):
                    doomed.append((table, rid))
        for table, rid in doomed:
            table.rows.pop(rid, None)
        return ctx.json(
            200,
            {
                "@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.BulkDeleteResponse",
                "JobId": str(uuid.uuid4()),
            },
        )

    # -- entity sets ------------------------------------------------------------------
    def _entity_set(
        self, ctx: _Context, table: Table, key: str | None, tail: str | None
    ) -> Response:
        req = ctx.req
        rid: str | None = None
        key_values: dict[str, Any] = {}
        if key is not None:
            rid, key_values = self._resolve_key(table, key)
        if tail:
            if key is None and tail == "$count" and req.method == "GET":
                node = self._row_filter(table, ctx.query.get("$filter"))
                count = sum(
                    1 for r in table.rows.values() if node is None or _evaluate(node, r, True)
                )
                return Response(
                    200,
                    str(min(count, MAX_PAGE_SIZE)).encode(),
                    [("Content-Type", "text/plain"), *_common_headers()],
                )
            actions = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
            action = tail.removeprefix("Microsoft.Dynamics.CRM.")
            if key is None and req.method == "POST" and action in actions:
                return self._multiple(ctx, table, action)
            if key is not None and req.method == "GET" and "/" not in tail:
                if tail not in table.attributes:
                    raise _not_found_segment(tail)
                row = self._row(table, rid, key)
                return ctx.json(
                    200,
                    {
                        "@odata.context": f"{ctx.api}/$metadata#{table.entity_set_name}"
                        f"({row[table.primary_id]})/{tail}",
                        "value": row.get(tail),
                    },
                )
            raise _not_found_segment(tail.split("/", 1)[0])
        if key is None:
            if req.method == "GET":
                return self._list(ctx, table)
            if req.method == "POST":
                return self._create(ctx, table)
            raise ctx.no_resource()
        if req.method == "GET":
            ctx.reject_options({"$select"})
            row = self._row(table, rid, key)
            if req.headers.get("if-none-match") == f'W/"{row["versionnumber"]}"':
                return Response(304, b"", _common_headers())  # a conditional retrieve
            body = {
                "@odata.context": f"{ctx.api}/$metadata#{table.entity_set_name}"
                + (f"({ctx.query['$select']})" if ctx.query.get("$select") else "")
                + "/$entity",
                **self._represent(table, row, ctx.query.get("$select"), ctx.formatted()),
            }
            applied = [("Preference-Applied", ctx.annotations_applied())] if ctx.formatted() else []
            return ctx.json(200, body, applied)
        if req.method == "PATCH":
            return self._update(ctx, table, rid, key_values, key)
        if req.method == "DELETE":
            found = self._row(table, rid, key)
            del table.rows[found[table.primary_id]]
            return Response(204, b"", _common_headers())
        raise ctx.no_resource()

    def _row(self, table: Table, rid: str | None, key: str | None = None) -> dict[str, Any]:
        row = table.rows.get(rid) if rid is not None else None
        if row is None:
            shown = rid if rid is not None else key
            raise ODataError(
                404, "0x80040217", f"{table.logical_name} With Id = {shown} Does Not Exist"
            )
        return row

    def _resolve_key(self, table: Table, key: str) -> tuple[str | None, dict[str, Any]]:
        """The row id a key segment names (None: no such row yet) and the key's values:
        ``(<guid>)``, ``(<primaryid>=<guid>)`` or a defined alternate key's columns."""
        guid = _GUID.match(key.strip())
        if guid is not None:
            rid = guid.group(1).lower()
            return rid, {table.primary_id: rid}
        values = _key_values(key)
        if set(values) == {table.primary_id} and isinstance(values[table.primary_id], str):
            rid = values[table.primary_id].strip("{}").lower()
            return rid, {table.primary_id: rid}
        if not any(set(columns) == set(values) for columns in table.keys.values()):
            raise ODataError(
                400,
                "0x80060888",
                f"The key ({key}) does not match an alternate key of table "
                f"'{table.logical_name}' (the emulator's wording).",
            )
        for name, value in values.items():
            values[name] = self._coerce(table, name, table.attributes[name], value)
        for rid, row in table.rows.items():
            if all(
                _comparable(row.get(n), True) == _comparable(v, True) for n, v in values.items()
            ):
                return rid, values
        return None, values

    def _represent(
        self, table: Table, row: Mapping[str, Any], select: str | None, formatted: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        if select:
            names = [s.strip() for s in select.split(",") if s.strip()]
            schema = table.schema()
            for name in names:
                schema.check(name)
            if table.primary_id not in names:
                names.append(table.primary_id)  # Dataverse always returns the key
        else:
            names = list(table.attributes)
        for name in names:
            value = row.get(name)
            body[name] = value
            text = _formatted(table, name, value) if formatted else None
            if text is not None:
                body[f"{name}@{FORMATTED_VALUE}"] = text
        return body

    def _row_filter(self, table: Table, text: str | None) -> _Node | None:
        if not text:
            return None
        node = parse_filter(text)
        table.schema().bind(node)
        return node

    def _list(self, ctx: _Context, table: Table) -> Response:
        query = ctx.query
        ctx.reject_options({"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken"})
        for name in ("sql", "fetchXml", "savedQuery", "userQuery"):
            if name in query:
                raise _not_implemented(f"the {name} query")
        node = self._row_filter(table, query.get("$filter"))
        schema = table.schema()
        matched = [r for r in table.rows.values() if node is None or _evaluate(node, r, True)]
        matched = _order(matched, query.get("$orderby"), schema)
        top: int | None = None
        if "$top" in query:
            try:
                top = int(query["$top"])
            except ValueError:
                raise ODataError(
                    400,
                    "0x80060888",
                    f"Invalid value '{query['$top']}' for $top query option found. The $top "
                    "query option requires a non-negative integer value.",
                ) from None
            if top < 0:
                raise ODataError(
                    400,
                    "0x80060888",
                    "The $top query option requires a non-negative integer value.",
                )
        prefs = _parse_prefer(ctx.req.headers.get("prefer", ""))
        applied: list[str] = []
        size = MAX_PAGE_SIZE
        if "odata.maxpagesize" in prefs and top is None:
            try:
                asked = int(prefs["odata.maxpagesize"])
            except ValueError:
                asked = 0
            if 0 < asked <= MAX_PAGE_SIZE:
                size = asked
                applied.append(f"odata.maxpagesize={asked}")
        start = 0
        pagenumber = 1
        token = query.get("$skiptoken")
        if token:
            pagenumber, last = _read_cookie(token)
            ids = [r[table.primary_id] for r in matched]
            start = ids.index(last) + 1 if last in ids else (pagenumber - 1) * size
        if top is not None:
            page = matched[:top]
            more = False
        else:
            page = matched[start : start + size]
            more = start + size < len(matched)
        select = query.get("$select")
        body: dict[str, Any] = {
            "@odata.context": f"{ctx.api}/$metadata#{table.entity_set_name}"
            + (f"({select})" if select else ""),
        }
        if query.get("$count", "").lower() == "true":
            body["@odata.count"] = min(len(matched), MAX_PAGE_SIZE)
        formatted = ctx.formatted()
        body["value"] = [self._represent(table, r, select, formatted) for r in page]
        if more and page:
            params = {k: v for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = _write_cookie(
                pagenumber, table.primary_id, page[0][table.primary_id], page[-1][table.primary_id]
            )
            body["@odata.nextLink"] = f"{ctx.api}/{table.entity_set_name}?" + urlencode(
                params, quote_via=quote, safe="$,()'"
            )
        if formatted:
            applied.append(ctx.annotations_applied())
        headers = [("Preference-Applied", ",".join(applied))] if applied else []
        return ctx.json(200, body, headers)

    def _create(self, ctx: _Context, table: Table) -> Response:
        body = ctx.body()
        rid = self._insert(table, body)
        return self._written(ctx, table, rid, created=True)

    def _written(self, ctx: _Context, table: Table, rid: str, created: bool) -> Response:
        location = f"{ctx.api}/{table.entity_set_name}({rid})"
        prefs = _parse_prefer(ctx.req.headers.get("prefer", ""))
        headers = [("OData-EntityId", location)]
        if prefs.get("return") == "representation":
            ctx.reject_options({"$select"})
            rep = self._represent(table, table.rows[rid], ctx.query.get("$select"))
            rep = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set_name}/$entity", **rep}
            headers.append(("Preference-Applied", "return=representation"))
            return ctx.json(201 if created else 200, rep, headers)
        return Response(204, b"", [*headers, *_common_headers()])

    def _update(
        self,
        ctx: _Context,
        table: Table,
        rid: str | None,
        key_values: Mapping[str, Any],
        key: str | None,
    ) -> Response:
        headers = ctx.req.headers
        if_match = headers.get("if-match")
        if_none_match = headers.get("if-none-match")
        row = table.rows.get(rid) if rid is not None else None
        body = ctx.body()
        if row is None:
            if if_match is not None:
                self._row(table, rid, key)  # raises the 404
            # upsert: creates the row with the key (primary or alternate) from the URL
            created = self._insert(table, {**body, **key_values})
            return self._written(ctx, table, created, created=True)
        rid = str(row[table.primary_id])
        if if_none_match == "*":
            raise ODataError(412, "0x80040237", "A record with matching key values already exists.")
        if if_match not in (None, "*") and if_match != f'W/"{row["versionnumber"]}"':
            raise ODataError(
                412,
                "0x80060882",
                "The version of the existing record doesn't match the RowVersion property "
                "provided.",
            )
        values = self._check_values(table, body, create=False)
        row.update(values)
        row["modifiedon"] = _now_iso()
        row["versionnumber"] = self._next_version()
        return self._written(ctx, table, rid, created=False)

    def _multiple(self, ctx: _Context, table: Table, action: str) -> Response:
        targets = ctx.body().get("Targets")
        if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
            raise ODataError(400, "0x80040203", "Targets: an array of entities is required.")
        if action == "CreateMultiple":
            ids = [self._insert(table, dict(t)) for t in targets]
            return ctx.json(
                200,
                {
                    "@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM."
                    "CreateMultipleResponse",
                    "Ids": ids,
                },
            )
        if action == "UpsertMultiple":
            ids = []
            for target in targets:
                values: dict[str, Any] = {}
                rid = target.get(table.primary_id)
                odata_id = str(target.get("@odata.id", ""))
                pattern = rf"^(?:.*/)?{re.escape(table.entity_set_name)}\((?P<key>.*)\)$"
                m = re.match(pattern, odata_id)
                if m is not None:
                    rid, values = self._resolve_key(table, m["key"])
                body = {k: v for k, v in target.items() if k != "@odata.id"}
                row = table.rows.get(str(rid).lower()) if rid else None
                if row is None:
                    ids.append(self._insert(table, {**body, **values}))
                else:
                    row.update(self._check_values(table, body, create=False))
                    row["modifiedon"] = _now_iso()
                    row["versionnumber"] = self._next_version()
                    ids.append(str(row[table.primary_id]))
            return ctx.json(
                200,
                {
                    "@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM."
                    "UpsertMultipleResponse",
                    "Ids": ids,
                },
            )
        for target in targets:
            rid = str(target.get(table.primary_id, "")).lower()
            row = self._row(table, rid)
            row.update(self._check_values(table, target, create=False))
            row["modifiedon"] = _now_iso()
            row["versionnumber"] = self._next_version()
        return Response(204, b"", _common_headers())


def _condition(table: Table, condition: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
    """A ``ConditionExpression`` (of a ``QueryExpression``) as a row test."""
    name = str(condition.get("AttributeName", ""))
    if name not in table.attributes:
        raise _no_property(name, table.type_name)
    operator = str(condition.get("Operator", ""))
    raw = condition.get("Values") or []
    values = {_comparable(v.get("Value") if isinstance(v, dict) else v, True) for v in raw}
    if table.attributes[name] == "Uniqueidentifier":
        values = {str(v).strip("{}").lower() for v in values}

    def has(row: Mapping[str, Any]) -> bool:
        return _comparable(row.get(name), True) in values

    if operator in ("Equal", "In"):
        return has
    if operator in ("NotEqual", "NotIn"):
        return lambda row: not has(row)
    if operator == "Null":
        return lambda row: row.get(name) is None
    if operator == "NotNull":
        return lambda row: row.get(name) is not None
    raise _not_implemented(f"the {operator!r} condition operator")


def _key_values(key: str) -> dict[str, Any]:
    """``name='text',other=5`` (a key segment) as column → value."""
    tokens = _tokenize(key)
    values: dict[str, Any] = {}
    i = 0

    def bad(pos: int) -> ODataError:
        return ODataError(400, "0x80060888", f"Syntax error at position {pos} in '{key}'.")

    while i < len(tokens):
        if (
            i + 2 >= len(tokens)
            or tokens[i].kind != "word"
            or (tokens[i + 1].kind, tokens[i + 1].text) != ("punct", "=")
        ):
            raise bad(tokens[i].pos)
        name, value = tokens[i].text, tokens[i + 2]
        if value.kind == "string":
            values[name] = value.text
        elif value.kind == "word" and re.match(r"^-?\d+$", value.text):
            values[name] = int(value.text)
        elif value.kind == "word" and _NUMBER.match(value.text):
            values[name] = float(value.text.rstrip("mMdDfFlL"))
        elif value.kind == "word" and value.text in ("true", "false"):
            values[name] = value.text == "true"
        elif value.kind == "word" and _GUID.match(value.text):
            values[name] = value.text.strip("{}").lower()
        else:
            raise bad(value.pos)
        i += 3
        if i < len(tokens):
            if (tokens[i].kind, tokens[i].text) != ("punct", ","):
                raise bad(tokens[i].pos)
            i += 1
    return values


def _write_cookie(page: int, pid: str, first: str, last: str) -> str:
    ends = f'last="{{{last.upper()}}}" first="{{{first.upper()}}}"'
    inner = f'<cookie page="{page}"><{pid} {ends} /></cookie>'
    return (
        f'<cookie pagenumber="{page + 1}" pagingcookie="{quote(quote(inner, safe=""), safe="")}" '
        'istracking="False" />'
    )


def _read_cookie(token: str) -> tuple[int, str | None]:
    number = re.search(r'pagenumber="(\d+)"', token)
    cookie = re.search(r'pagingcookie="([^"]*)"', token)
    if number is None:
        raise ODataError(400, "0x80060888", "The $skiptoken value is not a valid paging cookie.")
    last = None
    if cookie is not None:
        found = re.search(r'last="\{([0-9A-Fa-f-]{36})\}"', unquote(unquote(cookie.group(1))))
        last = found.group(1).lower() if found else None
    return int(number.group(1)), last
