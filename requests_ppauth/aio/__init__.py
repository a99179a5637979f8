"""asyncio twins of this package's objects: :class:`PowerPlatformCredential`, an
azure-core ``AsyncTokenCredential`` for Kiota, ``azure.*.aio`` clients and the
Dataverse SDK's ``AsyncDataverseClient``.

Importing this package imports azure-core (the ``requests-ppauth[azure]`` extra);
``import requests_ppauth`` does not.
"""

from __future__ import annotations

from requests_ppauth.aio._credential import PowerPlatformCredential

__all__ = ["PowerPlatformCredential"]
