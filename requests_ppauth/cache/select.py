"""Choosing a cache backend from a setting, the same way everywhere:
``PowerPlatformAuth(cache=...)``, a profile's ``cache``, ``PPAUTH_CACHE``, and every
``ppauth`` command that touches the cache.

A setting is one of:

- ``True`` / ``None`` (nothing said): ``PPAUTH_CACHE`` if set, else the profile's
  ``cache``, else the file cache in ``PPAUTH_CACHE_DIR`` or the platform directory;
- ``False``: :class:`MemoryCache` (this process only);
- a registered backend name: ``"file"``, ``"memory"``, or a plugin's (``"redis"``);
- a directory: a path with a separator, ``~``, ``.`` or ``..`` (``"./tokens"``,
  ``"/var/cache/ppauth"``), or any ``os.PathLike``; ``""`` is an error (it used to
  mean "the current directory" by accident);
- a table ``{backend = "redis", url = "..."}``: the backend, given the other keys
  as its options (that is how configuration reaches a plugin's factory); a table of
  the profile named like the backend (``[profiles.<name>.redis]``) gives options
  too, under those (so ``cache = "redis"`` and ``PPAUTH_CACHE=redis`` get them);
- a :class:`CacheBackend` object, used as it is.

A bare name that no plugin registered is an error listing the registered names:
``cache="sqlit"`` must not silently create ``./sqlit``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from requests_ppauth.cache.protocol import CacheBackend
from requests_ppauth.errors import ConfigurationError, UnsafeFileError

if TYPE_CHECKING:
    from requests_ppauth.config import Profile

# what requests_ppauth.cache.CacheBackend requires, named when a factory's object lacks some
_MEMBERS = ("get", "apply", "read_all", "key_lock", "try_key_lock", "location")

CacheSetting = bool | str | os.PathLike[str] | Mapping[str, Any] | CacheBackend | None


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or text.startswith("~")
        or text in (".", "..")
        or (os.altsep is not None and os.altsep in text)
    )


def builtin_backends() -> dict[str, Callable[[Mapping[str, Any]], CacheBackend]]:
    """The backends that need no plugin."""
    from requests_ppauth.cache.file import FileCache
    from requests_ppauth.cache.memory import MemoryCache

    return {
        "file": lambda options: FileCache(options=options),
        "memory": lambda options: MemoryCache(options),
    }


def registered_backends() -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """Built-in and plugin backends by name (loads plugins)."""
    from requests_ppauth.plugins import get_plugins

    return get_plugins().cache_backends()


def resolve(
    setting: CacheSetting,
    *,
    profile_setting: Any = None,
    environ: Mapping[str, str] | None = None,
    where: str = "cache",
    profile_tables: Mapping[str, Any] | None = None,
    origin: Profile | None = None,
    _from_file: bool = False,
) -> CacheBackend:
    """The backend ``setting`` names (see the module docstring).

    ``profile_tables`` is the profile's settings: a table in it named like the chosen
    backend (``[profiles.<name>.redis]``) gives that backend its options, under the
    ones a ``cache = { backend = ... }`` table gives explicitly.

    ``origin`` is the profile both came from: options read from its file that hold a
    plaintext secret (a ``password``, a URL with ``user:password@``) are refused when
    the file is readable by others, as the ``file`` source refuses a plaintext
    ``client_secret`` there. Options passed in code are the caller's business."""
    env = os.environ if environ is None else environ
    if setting is None or setting is True:
        if env.get("PPAUTH_CACHE"):
            return resolve(
                env["PPAUTH_CACHE"],
                environ=env,
                where="PPAUTH_CACHE",
                profile_tables=profile_tables,
                origin=origin,
            )
        if profile_setting is not None:
            return resolve(
                profile_setting,
                environ=env,
                where="the profile's cache",
                profile_tables=profile_tables,
                origin=origin,
                _from_file=True,
            )
        setting = "file"
    if setting is False:
        from requests_ppauth.cache.memory import MemoryCache

        return MemoryCache()
    if isinstance(setting, CacheBackend):
        return setting
    if isinstance(setting, os.PathLike):
        from requests_ppauth.cache.file import FileCache

        return FileCache(setting)
    options: dict[str, Any] = {}
    if isinstance(setting, Mapping):
        options = dict(setting)
        name = options.pop("backend", None)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f'{where}: a cache table needs backend = "<name>" (e.g. backend = "file")'
            )
        setting = name
    if not isinstance(setting, str):
        raise ConfigurationError(
            f"{where}={setting!r}: pass True, False, a backend name, a directory, a table "
            "with backend = ..., or a CacheBackend"
        )
    if not setting.strip():
        raise ConfigurationError(
            f"{where} is empty: name a backend (file, memory, ...) or a directory "
            '("." for the current one)'
        )
    if _looks_like_path(setting):
        if options:
            raise ConfigurationError(f"{where}: a directory takes no options")
        from requests_ppauth.cache.file import FileCache

        return FileCache(Path(setting))
    factories = registered_backends()
    factory = factories.get(setting)
    if factory is None:
        raise ConfigurationError(
            f"{where}: no cache backend is named {setting!r}; registered: "
            f"{', '.join(sorted(factories))}. For a directory, write a path "
            f"(./{setting})"
        )
    table = (profile_tables or {}).get(setting)
    read = {**(table if isinstance(table, Mapping) else {}), **(options if _from_file else {})}
    if origin is not None and read:
        _refuse_plaintext(read, origin, setting)
    if isinstance(table, Mapping):
        options = {**table, **options}
    try:
        backend = factory(options)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where}: cache backend {setting!r}: {exc}") from None
    if not isinstance(backend, CacheBackend):
        missing = [m for m in _MEMBERS if not hasattr(backend, m)]
        lacks = f"it lacks {', '.join(missing)}" if missing else "its members do not match"
        raise ConfigurationError(
            f"{where}: cache backend {setting!r} made a {type(backend).__name__}, which is "
            f"not a CacheBackend: {lacks} (a CacheBackend has {', '.join(_MEMBERS)})"
        )
    return backend


def _refuse_plaintext(options: Mapping[str, Any], origin: Profile, backend: str) -> None:
    """UnsafeFileError when ``origin``'s file is readable by others and ``options`` (read
    from it) hold a plaintext secret. Names the option, never its value."""
    mode = origin.file_mode
    if mode is None or not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return
    from requests_ppauth.config import SECRET_OPTION
    from requests_ppauth.source_api import literal_form, reference_scheme

    for key, value in options.items():
        if not isinstance(value, str):
            continue  # { ref = "..." } tables, numbers, flags
        if key.lower().endswith("key") and _key_location(value):
            continue  # the cache key's file (file:<path>, an absolute path): not the keys
        plaintext = reference_scheme(value) is None or literal_form(value)
        if SECRET_OPTION.search(key) and plaintext:
            what = key
        elif "://" in value and _url_password(value):
            what = f"{key} (a URL with a password)"
        else:
            continue
        raise UnsafeFileError(
            f"{origin.path} holds a plaintext {what} for the {backend} cache of profile "
            f"{origin.name!r} but is readable by others (mode {stat.S_IMODE(mode):o}): run "
            f"`chmod 600 {origin.path}`, or keep the secret in a keyring and write a "
            "reference (keyring:...), or set it in the environment"
        )


def _key_location(value: str) -> bool:
    """Whether a ``key`` option names where the keys are rather than holding them."""
    text = value.strip()
    return text[:5].lower() == "file:" or (os.path.isabs(text) and os.path.isfile(text))


def _url_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False
