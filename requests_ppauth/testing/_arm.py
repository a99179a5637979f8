"""Azure Resource Manager as far as azure-cli needs to sign in to a custom cloud and
call ``az rest`` (``/metadata/endpoints``, ``/subscriptions``)."""

from __future__ import annotations

from requests_ppauth.testing._service import Service


class Arm(Service):
    """See the module docstring."""
