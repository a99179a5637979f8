"""Secret stores: resolvers that can also keep a secret, so it never lands in the config file.

A plugin's :class:`~requests_ppauth.SecretResolver` (registered through
``ppauth_register_secret_resolvers``) is also a secret store when it has::

    def store(self, profile: str, key: str, secret: str) -> str: ...

which keeps ``secret`` (``key`` is ``client_secret``, ``certificate_password`` or
``password``) and returns the reference to write in the profile instead
(``keyring:...``), one that the same resolver then ``claims`` and ``resolve``\\ s.
An optional ``delete(reference)`` lets ``ppauth profile remove`` forget it too.
"""

from __future__ import annotations

from requests_ppauth.cli.failures import CLIError
from requests_ppauth.plugins import get_plugins
from requests_ppauth.source_api import SecretStore


def secret_stores() -> list[SecretStore]:
    """The registered resolvers that can store secrets, in registration order."""
    return [r for r in get_plugins().resolvers() if isinstance(r, SecretStore)]


def choose(name: str | None) -> SecretStore | None:
    """The store called ``name``, or the first one; ``None`` when none is installed."""
    stores = secret_stores()
    if name is None:
        return stores[0] if stores else None
    for store in stores:
        if store.name == name:
            return store
    raise CLIError(
        f"no secret store named {name!r} is installed",
        f"installed: {', '.join(s.name for s in stores) or 'none'} "
        "(pip install requests-ppauth-keyring adds the OS keyring)",
    )


def forget(reference: str) -> bool:
    """Ask the store that owns ``reference`` to delete it; whether one did."""
    for store in secret_stores():
        delete = getattr(store, "delete", None)
        if store.claims(reference) and callable(delete):
            delete(reference)
            return True
    return False
