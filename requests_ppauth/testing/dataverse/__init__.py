"""A Dataverse Web API subset (``/api/data/v9.2/...``), as Microsoft's Dataverse SDK
(``powerplatform-dataverse-client``) and plain requests code call it.

The api listener plays the organization URL (``emu.api_url`` is the
``https://<org>.crm.dynamics.com`` of a real environment): tokens are accepted whose
audience is that origin or ``https://org.crm.dynamics.com``.

Requests are counted (``emu.count(...)``, ``emu.inject(...)``) as ``whoami``,
``dataverse-metadata`` (``EntityDefinitions``) and ``dataverse`` (the rest; a
``$batch`` once). State: ``emu.dataverse.add_table(...)``, ``add_rows(...)``,
``rows(...)``, ``throttle(...)``; over the admin API the same verbs prefixed
``dataverse_`` (``POST /_emulator/dataverse_add_table``, ...). ``account`` and
``contact`` exist from the start, with no rows.

What is answered, and how the real service answers it:

- ``GET WhoAmI`` (a function: ``POST`` is 404 with an empty code, as Dataverse does).
- ``GET EntityDefinitions`` with ``$filter`` (``eq``/``ne``/``and``/``or``/``not`` on
  metadata properties; ``contains``/``startswith``/``endswith`` are 501 ``0x8006088a``
  "isn't supported for Metadata Entities"), ``$select`` (``MetadataId`` always
  comes back), ``$expand=Attributes[($select=...)]``;
  ``EntityDefinitions(LogicalName='x')`` or ``(<MetadataId>)``, and its
  ``/Attributes`` (with ``$select``/``$filter``) and ``/Attributes(LogicalName='y')``.
  This is what the SDK sends before every record operation
  (``$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'x'``)
  and for ``tables.list()`` (``$filter=IsPrivate eq false``).
- Entity sets: ``POST`` (204 + ``OData-EntityId``; 201 + body with ``Prefer:
  return=representation``), ``GET (id)``, ``PATCH (id)`` (``If-Match: *`` = update only,
  ``If-None-Match: *`` = create only, neither = upsert, a row version in ``If-Match`` is
  checked: 412 ``0x80060882``), ``DELETE (id)``, conditional ``GET`` (``If-None-Match``
  with the current ETag: 304), ``GET (id)/column``, ``GET .../$count``, the
  ``CreateMultiple``/``UpdateMultiple``/``UpsertMultiple`` actions the SDK uses for
  lists of records, and alternate keys defined with ``add_table(alternate_keys=...)``
  (``accounts(accountnumber='A1')``: retrieve, update, upsert, delete; listed under
  ``EntityDefinitions(...)/Keys``). Choice columns (``Picklist``/``State``) check their
  values and expose their ``OptionSet`` (the SDK reads it, through
  ``Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata``, to turn labels into
  values); ``Prefer: odata.include-annotations`` adds ``FormattedValue`` annotations.
- ``POST BulkDelete`` as the SDK sends it for a list of ids (the job is finished when
  the response comes; Dataverse runs it later).
- ``POST $batch`` (multipart/mixed, as ``client.batch`` sends it): change sets are
  all-or-nothing, ``$n`` Content-ID references resolve, a failed change set answers
  its failure alone, and the batch stops at the first failure unless
  ``Prefer: odata.continue-on-error``.
- Lists: ``$select``, ``$filter`` (a real tokenizer and recursive-descent parser:
  ``eq ne gt ge lt le``, ``and or not``, parentheses, ``contains``/``startswith``/
  ``endswith``, ``Microsoft.Dynamics.CRM.In``/``NotIn``; string comparisons are
  case-insensitive as in Dataverse's SQL collation), ``$orderby``, ``$top``,
  ``$count=true`` (``@odata.count``), ``Prefer: odata.maxpagesize`` paging with
  ``Preference-Applied`` and an ``@odata.nextLink`` whose ``$skiptoken`` is a paging
  cookie naming the last row, as Dataverse's is. ``$top`` turns paging off (it
  becomes the query's row count). ``$skip`` is refused, as Dataverse refuses it.
- Errors in the OData shape ``{"error": {"code": "0x...", "message": ...}}``: unknown
  segment 404 ``0x8006088a``; unknown property in ``$select``/``$filter``/``$orderby``
  400 ``0x0`` "Could not find a property named ..."; unknown property in a body 400
  ``0x0`` "Invalid property ..."; missing row 404 ``0x80040217`` "... With Id = ...
  Does Not Exist"; duplicate key 412 ``0x80040237``; filter syntax 400 ``0x80060888``
  with OData's "Syntax error at position N in '...'." wording.
- 401 without a valid token: empty body and
  ``WWW-Authenticate: Bearer authorization_uri=.../oauth2/authorize, resource_id=...``,
  the challenge clients use to discover the authority.
- Service protection limits: :meth:`Dataverse.throttle` makes the next requests answer
  429 with ``Retry-After`` (seconds) and the error code and message of the limit hit
  (``0x80072322`` number of requests, ``0x80072321`` execution time, ``0x80072326``
  concurrent requests); ``window=True`` refuses every request until ``Retry-After``
  has passed, as the real limit does. :attr:`Dataverse.throttled` counts the 429s.

Not emulated (answered 501 ``NotImplemented`` so a test sees the gap at once):
``$expand`` on rows, ``$apply``, ``$metadata``, lookup columns (an ``@odata.bind`` gets
the documented 400 ``0x80048d19`` "undeclared property" error), metadata writes
(``CreateEntities``, ``EntityDefinitions`` POST/DELETE, attribute create),
``RetrieveMetadataChanges``, the ``?sql=`` and ``fetchXml`` queries.
The codes and wordings for filter syntax errors (``0x80060888``), ``$skip``, a
missing table definition and an out-of-range choice follow responses quoted in public
projects, not a Microsoft document. The ``@odata.etag`` is the row's
``versionnumber``; rows without ``$orderby`` come back in insertion order (Dataverse
orders by primary key).

Sources: learn.microsoft.com Power Apps developer docs, "Create a table row using the
Web API" (204 + ``OData-EntityId``), "Update and delete table rows using the Web API"
(upsert, ``If-Match``/``If-None-Match``), "Use an alternate key to reference a record"
(the key segment forms; the error for a key the table does not define is the
emulator's own wording), "Execute batch operations using the Web
API" (change sets, Content-ID, ``odata.continue-on-error``), "Page results using OData"
(``Prefer: odata.maxpagesize``, ``Preference-Applied``, the paging-cookie
``$skiptoken``, no ``$skip``, pages of at most 5,000), "Service protection API
limits" (the three codes, their messages, ``Retry-After``), "Query table
definitions using the Web API"; the troubleshooting article "Troubleshoot Dataverse
Web API client errors" (``0x8006088a`` segment, ``0x0`` properties, the ``WhoAmI``
``POST`` 404); the SDK's own source (``PowerPlatform/Dataverse/data/_odata.py``:
what it requests and which headers it reads).

The package, one concern a module (each builds only on those above it):

- :mod:`._errors`: :class:`ODataError`, the OData error response, the common headers.
- :mod:`._filter`: ``$filter`` (tokenizer, syntax tree, recursive-descent parser,
  binding, evaluation) and ``$orderby`` ordering.
- :mod:`._tables`: attribute types, :class:`Table` (definition, metadata, rows),
  labels and formatted values, service protection limit state, and the checks every
  write goes through.
- :mod:`._context`: one request's view (URL shapes, ``Prefer``, query options, body).
- :mod:`._batch`: ``$batch`` (multipart/mixed in and out, change sets).
- :mod:`._metadata`: the ``EntityDefinitions`` routes.
- :mod:`._rows`: the entity-set routes, alternate keys, paging cookies, ``BulkDelete``.
- :mod:`._service`: :class:`Dataverse` (routing, the token check, throttling,
  ``WhoAmI``, the state API ``add_table``/``add_rows``/``rows``/``throttle``/
  ``clear_throttle`` and the admin verbs), built from the route mixins above.
"""

from requests_ppauth.testing.dataverse._errors import ODataError
from requests_ppauth.testing.dataverse._filter import parse_filter
from requests_ppauth.testing.dataverse._rows import MAX_PAGE_SIZE
from requests_ppauth.testing.dataverse._service import DATAVERSE_RESOURCE, Dataverse
from requests_ppauth.testing.dataverse._tables import (
    ATTRIBUTE_TYPES,
    FORMATTED_VALUE,
    THROTTLE_MESSAGES,
    Table,
)

__all__ = [
    "ATTRIBUTE_TYPES",
    "DATAVERSE_RESOURCE",
    "FORMATTED_VALUE",
    "MAX_PAGE_SIZE",
    "THROTTLE_MESSAGES",
    "Dataverse",
    "ODataError",
    "Table",
    "parse_filter",
]
