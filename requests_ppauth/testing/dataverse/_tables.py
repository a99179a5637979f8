"""Table state: the attribute types, a :class:`Table` (its definition, metadata, rows),
the labels and formatted values Dataverse shows for it, the service protection limit
state, and :class:`_TableStore`, the checks every write goes through.

The route mixins (:mod:`._metadata`, :mod:`._rows`, :mod:`._batch`) and
:class:`~requests_ppauth.testing.dataverse.Dataverse` all build on
:class:`_TableStore`, so a row is checked the same way whether a ``POST``, a ``PATCH``,
an ``UpsertMultiple`` or :meth:`Dataverse.add_rows` writes it."""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from requests_ppauth.testing.dataverse._errors import ODataError
from requests_ppauth.testing.dataverse._filter import _DATETIME, _GUID, _Schema

#: attribute type → (EDM type, metadata @odata.type, AttributeTypeName)
ATTRIBUTE_TYPES: dict[str, tuple[str, str, str]] = {
    "String": ("Edm.String", "StringAttributeMetadata", "StringType"),
    "Memo": ("Edm.String", "MemoAttributeMetadata", "MemoType"),
    "Integer": ("Edm.Int32", "IntegerAttributeMetadata", "IntegerType"),
    "BigInt": ("Edm.Int64", "BigIntAttributeMetadata", "BigIntType"),
    "Decimal": ("Edm.Decimal", "DecimalAttributeMetadata", "DecimalType"),
    "Money": ("Edm.Decimal", "MoneyAttributeMetadata", "MoneyType"),
    "Double": ("Edm.Double", "DoubleAttributeMetadata", "DoubleType"),
    "Boolean": ("Edm.Boolean", "BooleanAttributeMetadata", "BooleanType"),
    "DateTime": ("Edm.DateTimeOffset", "DateTimeAttributeMetadata", "DateTimeType"),
    "Picklist": ("Edm.Int32", "PicklistAttributeMetadata", "PicklistType"),
    "State": ("Edm.Int32", "StateAttributeMetadata", "StateType"),
    "Uniqueidentifier": ("Edm.Guid", "AttributeMetadata", "UniqueidentifierType"),
}
_SYSTEM_COLUMNS = {"createdon": "DateTime", "modifiedon": "DateTime", "versionnumber": "BigInt"}

#: service protection limit code → message (learn.microsoft.com "Service protection API limits")
THROTTLE_MESSAGES = {
    "0x80072322": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    "0x80072321": "Combined execution time of incoming requests exceeded limit of 1,200,000 "
    "milliseconds over time window of 300 seconds. Decrease number of concurrent requests "
    "or reduce the duration of requests and try again later.",
    "0x80072326": "Number of concurrent requests exceeded the limit of 52.",
}


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _label(text: str) -> dict[str, Any]:
    localized = {"Label": text, "LanguageCode": 1033, "IsManaged": False}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


@dataclass
class Table:
    """One Dataverse table: its definition and its rows (id → column values)."""

    logical_name: str
    entity_set_name: str
    primary_id: str
    primary_name: str | None
    schema_name: str
    display_name: str
    attributes: dict[str, str]
    metadata_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attribute_ids: dict[str, str] = field(default_factory=dict)
    options: dict[str, dict[int, str]] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def schema(self) -> _Schema:
        edm = {name: ATTRIBUTE_TYPES[kind][0] for name, kind in self.attributes.items()}
        return _Schema(self.type_name, edm, fold_case=True)

    def definition(self) -> dict[str, Any]:
        """The ``EntityMetadata`` Dataverse returns for this table (common properties)."""
        custom = "_" in self.logical_name
        return {
            "MetadataId": self.metadata_id,
            "LogicalName": self.logical_name,
            "SchemaName": self.schema_name,
            "EntitySetName": self.entity_set_name,
            "LogicalCollectionName": self.entity_set_name,
            "CollectionSchemaName": self.schema_name + "s",
            "PrimaryIdAttribute": self.primary_id,
            "PrimaryNameAttribute": self.primary_name,
            "ObjectTypeCode": 10000 + (int(self.metadata_id[:4], 16) % 50000),
            "OwnershipType": "UserOwned",
            "TableType": "Standard",
            "IsCustomEntity": custom,
            "IsManaged": not custom,
            "IsPrivate": False,
            "IsActivity": False,
            "IsIntersect": False,
            "IsLogicalEntity": False,
            "IsValidForAdvancedFind": True,
            "DisplayName": _label(self.display_name),
            "DisplayCollectionName": _label(self.display_name + "s"),
            "Description": _label(""),
        }

    def key_definitions(self) -> list[dict[str, Any]]:
        """The ``Keys`` (``EntityKeyMetadata``) of the table."""
        return [
            {
                "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.metadata_id}:key:{n}")),
                "LogicalName": n.lower(),
                "SchemaName": n,
                "EntityLogicalName": self.logical_name,
                "KeyAttributes": list(columns),
                "EntityKeyIndexStatus": "Active",
                "DisplayName": _label(n),
            }
            for n, columns in self.keys.items()
        ]

    def option_set(self, name: str) -> dict[str, Any]:
        """The ``OptionSet`` navigation property of a choice column."""
        return {
            "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.metadata_id}:{name}")),
            "Name": f"{self.logical_name}_{name}",
            "IsGlobal": False,
            "OptionSetType": "State" if self.attributes[name] == "State" else "Picklist",
            "Options": [
                {"Value": value, "Label": _label(label)}
                for value, label in sorted(self.options.get(name, {}).items())
            ],
        }

    def attribute_definition(self, name: str) -> dict[str, Any]:
        """The ``AttributeMetadata`` of one column."""
        kind = self.attributes[name]
        _, odata_type, type_name = ATTRIBUTE_TYPES[kind]
        system = name in _SYSTEM_COLUMNS or name == self.primary_id
        return {
            "@odata.type": f"#Microsoft.Dynamics.CRM.{odata_type}",
            "MetadataId": self.attribute_ids.setdefault(name, str(uuid.uuid4())),
            "LogicalName": name,
            "SchemaName": name,
            "EntityLogicalName": self.logical_name,
            "AttributeType": kind,
            "AttributeTypeName": {"Value": type_name},
            "IsPrimaryId": name == self.primary_id,
            "IsPrimaryName": name == self.primary_name,
            "IsCustomAttribute": "_" in name and not system,
            "IsValidForCreate": name not in _SYSTEM_COLUMNS,
            "IsValidForUpdate": not system,
            "IsValidForRead": True,
            "RequiredLevel": {"Value": "SystemRequired" if system else "None"},
            "DisplayName": _label(name),
        }


@dataclass
class _Throttle:
    times: int | None
    retry_after: int
    code: str
    until: float | None = None  # a window: every request before this monotonic time

    def active(self, now: float) -> bool:
        if self.until is not None:
            return now < self.until
        return self.times is None or self.times > 0

    def wait(self, now: float) -> int:
        """The ``Retry-After`` seconds: what is left of a window, else the set value."""
        if self.until is not None:
            return max(1, math.ceil(self.until - now))
        return self.retry_after


def _entity_set_name(logical_name: str) -> str:
    """The default plural, as the maker portal proposes it."""
    if re.search(r"[^aeiou]y$", logical_name):
        return logical_name[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", logical_name):
        return logical_name + "es"
    return logical_name + "s"


FORMATTED_VALUE = "OData.Community.Display.V1.FormattedValue"


def _formatted(table: Table, name: str, value: Any) -> str | None:
    """The ``FormattedValue`` annotation Dataverse adds for choices, yes/no, numbers."""
    if value is None:
        return None
    kind = table.attributes[name]
    if kind in ("Picklist", "State"):
        return table.options.get(name, {}).get(int(value))
    if kind == "Boolean":
        return "Yes" if value else "No"
    if kind in ("Integer", "BigInt"):
        return f"{int(value):,}"
    if kind == "Money":
        return f"${float(value):,.2f}"
    if kind in ("Decimal", "Double"):
        return f"{float(value):,.2f}"
    return None


class _TableStore:
    """The tables (logical name → :class:`Table`) and the checks and bookkeeping of every
    write; :class:`~requests_ppauth.testing.dataverse.Dataverse` sets the state."""

    tables: dict[str, Table]
    _version: int

    def _table(self, name: str) -> Table:
        found = self.tables.get(name) or next(
            (t for t in self.tables.values() if t.entity_set_name == name), None
        )
        if found is None:
            raise ValueError(f"no table {name!r}")
        return found

    # -- writes -----------------------------------------------------------------------
    def _next_version(self) -> int:
        self._version += 1
        return self._version

    def _check_values(self, table: Table, body: Mapping[str, Any], create: bool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@odata."):
                continue
            if "@" in name:  # an annotation on a navigation property: no lookups here
                nav = name.split("@", 1)[0]
                raise ODataError(
                    400,
                    "0x80048d19",
                    "Error identified in Payload provided by the user for Entity :"
                    f"'{table.entity_set_name}'  ---->  InnerException : "
                    f"Microsoft.OData.ODataException: An undeclared property '{nav}' which only "
                    "has property annotations in the payload but no property value was found "
                    "in the payload. In OData, only declared navigation properties and declared "
                    "named streams can be represented as properties without values.",
                )
            kind = table.attributes.get(name)
            if kind is None or name in _SYSTEM_COLUMNS:
                raise ODataError(
                    400,
                    "0x0",
                    "An error occurred while validating input parameters: "
                    f"Microsoft.Crm.CrmException: Invalid property '{name}' was found in "
                    f"entity '{table.type_name}'. ---> Microsoft.OData.ODataException: "
                    "Does not support untyped value in non-open type.",
                )
            if name == table.primary_id and not create:
                continue
            values[name] = self._coerce(table, name, kind, value)
        return values

    def _coerce(self, table: Table, name: str, kind: str, value: Any) -> Any:
        if value is None:
            return None
        edm = ATTRIBUTE_TYPES[kind][0]
        ok = {
            "Edm.String": isinstance(value, str),
            "Edm.Int32": isinstance(value, int) and not isinstance(value, bool),
            "Edm.Int64": isinstance(value, int) and not isinstance(value, bool),
            "Edm.Decimal": isinstance(value, (int, float)) and not isinstance(value, bool),
            "Edm.Double": isinstance(value, (int, float)) and not isinstance(value, bool),
            "Edm.Boolean": isinstance(value, bool),
            "Edm.DateTimeOffset": isinstance(value, str) and bool(_DATETIME.match(value)),
            "Edm.Guid": isinstance(value, str) and bool(_GUID.match(value)),
        }[edm]
        if not ok:
            raise ODataError(
                400,
                "0x0",
                f"Cannot convert the literal '{value}' to the expected type '{edm}'.",
            )
        if edm == "Edm.Guid":
            return str(value).strip("{}").lower()
        choices = table.options.get(name)
        if choices is not None and value not in choices:
            raise ODataError(
                400,
                "0x8004431a",
                f"A validation error occurred. The value {value} of '{name}' on record of type "
                f"'{table.logical_name}' is outside the valid range.",
            )
        return value

    def _insert(self, table: Table, body: dict[str, Any]) -> str:
        values = self._check_values(table, body, create=True)
        rid = values.pop(table.primary_id, None) or str(uuid.uuid4())
        if rid in table.rows:
            raise ODataError(412, "0x80040237", "A record with matching key values already exists.")
        now = _now_iso()
        row: dict[str, Any] = dict.fromkeys(table.attributes)
        row.update(values)
        row.update(
            {
                table.primary_id: rid,
                "createdon": now,
                "modifiedon": now,
                "versionnumber": self._next_version(),
            }
        )
        table.rows[rid] = row
        return str(rid)
