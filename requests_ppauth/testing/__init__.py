"""Test against Power Platform without a tenant.

``Emulator`` runs Entra ID, a Power Platform API and a Key Vault over real HTTPS
on 127.0.0.1, so msal, requests and the Azure SDK run their real code paths.
The pytest plugin (``requests_ppauth.testing.pytest_plugin``, loaded through the
``pytest11`` entry point) provides ``ppauth_emulator`` and ``ppauth_env`` fixtures.
"""

from requests_ppauth.testing._certs import ClientCertificate, make_client_certificate
from requests_ppauth.testing._faults import Fault
from requests_ppauth.testing._state import RequestRecord
from requests_ppauth.testing.emulator import Emulator, Sample

__all__ = [
    "ClientCertificate",
    "Emulator",
    "Fault",
    "RequestRecord",
    "Sample",
    "make_client_certificate",
]
