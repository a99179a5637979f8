"""An example credential source: service principals listed in a JSON file.

Stands in for a secrets manager: ``PPAUTH_JSONFILE`` names a file such as
``{"prod": {"tenant_id": "...", "client_id": "...", "client_secret": "..."}}``.
The same plugin also registers a token cache backend, ``jsondir`` (one JSON file
per key in a directory, see :mod:`ppauth_example_source.dircache`).
Everything here uses only the public plugin API of requests-ppauth.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from typing import Any

from ppauth_example_source.dircache import JsonDirCache, make_jsondir_cache
from requests_ppauth import (
    ClientSecret,
    Credential,
    CredentialSource,
    SourceError,
    SourceRequest,
    hookimpl,
)
from requests_ppauth.cache import CacheBackend

__all__ = ["JsonDirCache", "JsonFileSource", "make_jsondir_cache"]


class JsonFileSource:
    """Profiles from the JSON file named by ``PPAUTH_JSONFILE``."""

    name = "jsonfile"
    priority = 50  # after env (10), file (20), keyring (30), keyvault (40)

    def credential(self, request: SourceRequest) -> Credential | None:
        """A client secret for ``request.profile``, or None (with a reason) to pass."""
        path = request.environ.get("PPAUTH_JSONFILE")
        if not path:
            request.note("PPAUTH_JSONFILE is not set")
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                mode = os.fstat(fh.fileno()).st_mode
                data = json.load(fh)
        except FileNotFoundError:
            request.note(f"{path} does not exist")
            return None
        except (OSError, ValueError) as exc:
            # the user pointed us at this file: an unreadable one is "mine but broken"
            raise SourceError(self.name, f"cannot read {path}: {exc}") from None
        if stat.S_IMODE(mode) & 0o077:
            raise SourceError(self.name, f"{path} is readable by others: chmod 600 {path}")
        entry = data.get(request.profile) if isinstance(data, dict) else None
        if entry is None:
            request.note(f"no profile {request.profile!r} in {path}")
            return None
        missing = [k for k in ("tenant_id", "client_id", "client_secret") if not entry.get(k)]
        if missing:
            raise SourceError(
                self.name, f"profile {request.profile!r} in {path} lacks {', '.join(missing)}"
            )
        return ClientSecret(
            tenant_id=entry["tenant_id"],
            client_id=entry["client_id"],
            secret=entry["client_secret"],
            authority_host=entry.get("authority_host"),
        )


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Hand our source to requests-ppauth; it decides the order."""
    register(JsonFileSource())


@hookimpl
def ppauth_register_cache_backends(
    register: Callable[[str, Callable[[Mapping[str, Any]], CacheBackend]], None],
) -> None:
    """Offer the ``jsondir`` backend: requests-ppauth calls the factory with the
    options of the profile's cache table when a setting names it."""
    register("jsondir", make_jsondir_cache)
