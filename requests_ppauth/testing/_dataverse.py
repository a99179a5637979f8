"""A Dataverse Web API subset (``/api/data/v9.2/...``), as Microsoft's Dataverse SDK
and plain requests code call it."""

from __future__ import annotations

from requests_ppauth.testing._service import Service


class Dataverse(Service):
    """See the module docstring."""
