"""The Power Platform API's environment management (``/environmentmanagement/...``)
and BAP, as Microsoft's Power Platform Management SDK calls them."""

from __future__ import annotations

from requests_ppauth.testing._service import Service


class Management(Service):
    """See the module docstring."""
