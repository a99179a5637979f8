"""``EntityDefinitions``: table and attribute metadata (``$select``, ``$filter``,
``$expand``, ``Keys``, ``Attributes`` and their casts, ``OptionSet``), as the SDK reads
it before every record operation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from requests_ppauth.testing._wire import Response
from requests_ppauth.testing.dataverse._context import _SEGMENT, _Context
from requests_ppauth.testing.dataverse._errors import (
    ODataError,
    _no_property,
    _not_found_segment,
    _not_implemented,
)
from requests_ppauth.testing.dataverse._filter import _GUID, _evaluate, _Schema, parse_filter
from requests_ppauth.testing.dataverse._tables import ATTRIBUTE_TYPES, Table, _TableStore


class _Metadata(_TableStore):
    """The ``EntityDefinitions`` routes of
    :class:`~requests_ppauth.testing.dataverse.Dataverse`."""

    def _metadata(self, ctx: _Context, key: str | None, tail: str | None) -> Response:
        req = ctx.req
        if req.method != "GET":
            raise _not_implemented(f"{req.method} on EntityDefinitions (metadata writes)")
        ctx.reject_options({"$select", "$filter", "$expand"})
        if key is None:
            if tail:
                raise _not_found_segment(tail.split("/", 1)[0])
            items = [(t, t.definition()) for t in self.tables.values()]
            picked = self._filter_items(
                [d for _, d in items], ctx.query.get("$filter"), "EntityMetadata"
            )
            body_items = [
                self._shape_definition(ctx, t, d) for t, d in items if any(d is p for p in picked)
            ]
            select = ctx.query.get("$select")
            context = f"{ctx.api}/$metadata#EntityDefinitions" + (f"({select})" if select else "")
            return ctx.json(200, {"@odata.context": context, "value": body_items})
        table = self._metadata_table(key)
        if not tail:
            body = self._shape_definition(ctx, table, table.definition())
            body["@odata.context"] = f"{ctx.api}/$metadata#EntityDefinitions/$entity"
            return ctx.json(200, body)
        if tail == "Keys":
            return ctx.json(
                200,
                {
                    "@odata.context": f"{ctx.api}/$metadata#EntityDefinitions("
                    f"{table.metadata_id})/Keys",
                    "value": [
                        _select_keys(k, ctx.query.get("$select"), "EntityKeyMetadata")
                        for k in table.key_definitions()
                    ],
                },
            )
        tmatch = _SEGMENT.match(tail)
        if tmatch is None or tmatch["name"] != "Attributes":
            raise _not_found_segment(tail.split("/", 1)[0].split("(", 1)[0])
        cast = tmatch["tail"]
        cast_type = cast.removeprefix("Microsoft.Dynamics.CRM.") if cast else None
        known = {t[1] for t in ATTRIBUTE_TYPES.values()}
        if cast is not None and (tmatch["key"] is not None or cast_type not in known):
            raise _not_found_segment(cast)
        if tmatch["key"] is not None:
            attr = self._metadata_attribute(table, tmatch["key"])
            body = self._shape_attribute(ctx, table, attr, "AttributeMetadata")
            body["@odata.context"] = (
                f"{ctx.api}/$metadata#EntityDefinitions({table.metadata_id})/Attributes/$entity"
            )
            return ctx.json(200, body)
        names = [
            a
            for a in table.attributes
            if cast_type is None or ATTRIBUTE_TYPES[table.attributes[a]][1] == cast_type
        ]
        defs = [table.attribute_definition(a) for a in names]
        type_name = cast_type or "AttributeMetadata"
        kept = self._filter_items(defs, ctx.query.get("$filter"), type_name)
        select = ctx.query.get("$select")
        return ctx.json(
            200,
            {
                "@odata.context": f"{ctx.api}/$metadata#EntityDefinitions({table.metadata_id})"
                f"/Attributes" + (f"/{cast}" if cast else "") + (f"({select})" if select else ""),
                "value": [
                    self._shape_attribute(ctx, table, d["LogicalName"], type_name) for d in kept
                ],
            },
        )

    def _shape_attribute(
        self, ctx: _Context, table: Table, name: str, type_name: str
    ) -> dict[str, Any]:
        """One attribute with ``$select`` and ``$expand=OptionSet[($select=...)]``."""
        body = _select_keys(table.attribute_definition(name), ctx.query.get("$select"), type_name)
        expand = ctx.query.get("$expand")
        if expand:
            nav, select = _expand_option(expand)
            if nav != "OptionSet" or table.attributes[name] not in ("Picklist", "State"):
                raise _no_property(nav, f"Microsoft.Dynamics.CRM.{type_name}")
            body["OptionSet"] = _select_keys(table.option_set(name), select, "OptionSetMetadata")
        return body

    def _shape_definition(
        self, ctx: _Context, table: Table, item: dict[str, Any]
    ) -> dict[str, Any]:
        body = _select_keys(item, ctx.query.get("$select"), "EntityMetadata")
        expand = ctx.query.get("$expand")
        if expand:
            nav, select = _expand_option(expand)
            if nav != "Attributes":
                raise _no_property(nav, "Microsoft.Dynamics.CRM.EntityMetadata")
            body["Attributes"] = [
                _select_keys(table.attribute_definition(a), select, "AttributeMetadata")
                for a in table.attributes
            ]
        return body

    def _filter_items(
        self, items: list[dict[str, Any]], text: str | None, type_name: str
    ) -> list[dict[str, Any]]:
        if not text:
            return items
        node = parse_filter(text)
        edm: dict[str, str] = {}
        for item in items:
            for k, v in item.items():
                if isinstance(v, bool):
                    edm[k] = "Edm.Boolean"
                elif isinstance(v, int):
                    edm[k] = "Edm.Int32"
                elif isinstance(v, str) or v is None:
                    edm.setdefault(k, "Edm.String")
        schema = _Schema(f"Microsoft.Dynamics.CRM.{type_name}", edm, fold_case=False)
        schema.bind(node, metadata=True)
        return [i for i in items if _evaluate(node, i, fold=False)]

    def _metadata_table(self, key: str) -> Table:
        guid = _GUID.match(key)
        if guid:
            found = next(
                (t for t in self.tables.values() if t.metadata_id == guid.group(1).lower()), None
            )
            if found is None:
                raise ODataError(
                    404, "0x80040217", f"Could not find entity with id '{guid.group(1)}'."
                )
            return found
        m = re.match(r"^LogicalName='(?P<name>[^']*)'$", key)
        if m is None:
            raise _not_implemented(f"the metadata key ({key})")
        found = self.tables.get(m["name"])
        if found is None:
            raise ODataError(404, "0x80040217", f"Could not find entity with name '{m['name']}'.")
        return found

    def _metadata_attribute(self, table: Table, key: str) -> str:
        guid = _GUID.match(key)
        for name in table.attributes:
            if (guid and table.attribute_ids.get(name) == guid.group(1).lower()) or (
                key == f"LogicalName='{name}'"
            ):
                return name
        raise ODataError(
            404,
            "0x80040217",
            f"Could not find attribute {key} on entity '{table.logical_name}'.",
        )


def _select_keys(item: Mapping[str, Any], select: str | None, type_name: str) -> dict[str, Any]:
    if not select:
        return dict(item)
    names = [s.strip() for s in select.split(",") if s.strip()]
    out: dict[str, Any] = {}
    if "@odata.type" in item:
        out["@odata.type"] = item["@odata.type"]
    for name in names:
        if name not in item:
            raise _no_property(name, f"Microsoft.Dynamics.CRM.{type_name}")
        out[name] = item[name]
    out["MetadataId"] = item["MetadataId"]  # the key always comes back
    return out


def _expand_option(expand: str) -> tuple[str, str | None]:
    """``Nav`` or ``Nav($select=a,b)``: the navigation property and its ``$select``."""
    m = re.match(r"^(?P<nav>[A-Za-z_]+)(?:\((?P<opts>.*)\))?$", expand.strip())
    if m is None:
        raise ODataError(400, "0x80060888", f"Syntax error at position 0 in '{expand}'.")
    select = None
    for opt in filter(None, (m["opts"] or "").split(";")):
        name, _, value = opt.partition("=")
        if name.strip() != "$select":
            raise _not_implemented(f"{name.strip()} inside $expand")
        select = value
    return m["nav"], select
