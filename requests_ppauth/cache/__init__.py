"""The token cache: what any backend must do, and the two built in.

- :mod:`~requests_ppauth.cache.protocol`: :class:`CacheBackend` and :class:`Op`, the
  contract between the core and any store;
- :mod:`~requests_ppauth.cache.keys`: which key holds what (access tokens, msal
  partitions);
- :mod:`~requests_ppauth.cache.partitions`: a provider's view: our tokens, and the
  msal partition a flow needs, loaded and stored in O(1) of the cache's size;
- :mod:`~requests_ppauth.cache.file`: :class:`FileCache`, SQLite on disk, shared by
  the user's processes, with :mod:`~requests_ppauth.cache.locks` (kernel ``flock``)
  and :mod:`~requests_ppauth.cache.legacy` (converting a 0.1 cache);
- :mod:`~requests_ppauth.cache.memory`: :class:`MemoryCache`, this process only;
- :mod:`~requests_ppauth.cache.seal`: :class:`Sealer`, AES-256-GCM sealing of
  values under ``PPAUTH_CACHE_KEY`` (the file cache's and plugins' stores);
- :mod:`~requests_ppauth.cache.select`: a backend from ``cache=``, a profile's
  ``cache`` or ``PPAUTH_CACHE``.

Importing this package loads only the protocol: the backends (SQLite, filelock)
and the sealer (``cryptography``) load when one is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from requests_ppauth.cache.paths import default_cache_dir
from requests_ppauth.cache.protocol import (
    PRUNE_AFTER,
    CacheBackend,
    CacheWarning,
    Entry,
    Op,
    apply_op,
    apply_ops,
    prunable,
)

if TYPE_CHECKING:
    from requests_ppauth.cache.file import FileCache
    from requests_ppauth.cache.memory import MemoryCache
    from requests_ppauth.cache.seal import (
        Sealer,
        SealError,
        generate_key,
        parse_keys,
        sealer_from_environment,
    )

_SEAL_NAMES = frozenset(
    ("SealError", "Sealer", "generate_key", "parse_keys", "sealer_from_environment")
)

__all__ = [
    "PRUNE_AFTER",
    "CacheBackend",
    "CacheWarning",
    "Entry",
    "FileCache",
    "MemoryCache",
    "Op",
    "SealError",
    "Sealer",
    "apply_op",
    "apply_ops",
    "default_cache_dir",
    "generate_key",
    "parse_keys",
    "prunable",
    "sealer_from_environment",
]


def __getattr__(name: str) -> Any:
    if name == "FileCache":
        from requests_ppauth.cache.file import FileCache

        return FileCache
    if name == "MemoryCache":
        from requests_ppauth.cache.memory import MemoryCache

        return MemoryCache
    if name in _SEAL_NAMES:
        from requests_ppauth.cache import seal

        return getattr(seal, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
