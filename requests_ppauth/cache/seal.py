"""Sealing cache values: AES-256-GCM under a key only the user's processes hold.

Why: a token cache holds bearer tokens and refresh tokens. The file cache keeps them
in a 0600 file, which protects them from other users but not from whoever gets the
disk, a backup or a container image; a shared store (Redis) is read by every
operator who can reach it. With ``PPAUTH_CACHE_KEY`` set, backends store each value
sealed, so the store alone gives nothing away and cannot be altered unnoticed.

- **The cipher** is ``cryptography``'s ``AESGCM`` (msal already depends on
  ``cryptography``): authenticated encryption, so a value that was changed, damaged or
  sealed under another key does not open, instead of opening to garbage.
- **The blob** is ``b"PPS" + version (1 byte) + key id (8 bytes) + nonce (12 random
  bytes) + ciphertext and tag``. A random 96-bit nonce per seal is safe for far more
  values than a token cache ever writes under one key (the bound is 2**32).
- **Associated data** binds the header (so the version and key id cannot be swapped)
  and the value's *name*, the key of the entry it belongs to: a value copied to
  another entry (another user's token slot) does not open there.
- **Rotation**: :class:`Sealer` seals under its first key and opens values sealed
  under any of its keys, found by key id without trying each. Put a new key first in
  ``PPAUTH_CACHE_KEY`` and keep the old one after it until the entries it sealed
  have expired; then drop it.
- **Key ids** (the first 8 bytes of a domain-separated SHA-256 of the key, in hex)
  name a key in errors, logs and ``ppauth doctor`` without revealing it.
- **Where the key comes from** (:func:`sealer_from_environment`): the keys themselves
  (comma-separated base64), ``file:<path>`` or an absolute path to a file of the
  owner only, or a secret reference (``keyring:<name>``, a Key Vault secret URL)
  resolved by the installed secret resolvers, as a profile's ``client_secret`` is.

No repr, message or log line made here holds a key: only key ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from requests_ppauth._redacted import Secret
from requests_ppauth.errors import ConfigurationError, SealError, UnsafeFileError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_VAR",
    "SealError",
    "Sealer",
    "generate_key",
    "is_sealed",
    "parse_keys",
    "sealer_from_environment",
]

KEY_VAR = "PPAUTH_CACHE_KEY"
KEY_BYTES = 32
MAGIC = b"PPS"
VERSION = 1
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = MAGIC + bytes([VERSION])
_PREFIX_BYTES = len(_HEADER) + KEY_ID_BYTES + NONCE_BYTES
_ID_DOMAIN = b"requests-ppauth cache key id\x00"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
FIX = (
    "make a key with `ppauth cache keygen` (base64 of 32 random bytes); to rotate, put "
    "the new key first and the old ones after it, comma-separated"
)


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(_ID_DOMAIN + key).digest()[:KEY_ID_BYTES]


def is_sealed(blob: bytes) -> bool:
    """Whether ``blob`` starts like a sealed value (any version): cheap, no key needed."""
    return blob[: len(MAGIC)] == MAGIC


class Sealer:
    """AES-256-GCM under ``keys[0]``; opens values sealed under any of ``keys``.

    Rotation: a new key writes, listed old keys still read. Each key is exactly 32
    bytes (:func:`parse_keys` makes them from the setting's text). The repr shows key
    ids only. Picklable (a backend handed to a spawned worker carries its sealer).
    """

    __slots__ = ("_ciphers", "_keys", "key_ids_raw")

    def __init__(self, keys: Sequence[bytes]) -> None:
        keys = tuple(keys)
        if not keys:
            raise ConfigurationError(f"a cache sealer needs at least one key: {FIX}")
        for position, key in enumerate(keys, 1):
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
                size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
                del keys, key  # out of this frame's locals before an error report
                raise ConfigurationError(
                    f"cache key {position} is not {KEY_BYTES} bytes (it is {size}): {FIX}"
                )
        unique: dict[bytes, bytes] = {}
        for key in keys:
            unique.setdefault(_key_id(bytes(key)), bytes(key))
        self._keys = Secret(tuple(unique.values()), "cache keys")
        self.key_ids_raw: tuple[bytes, ...] = tuple(unique)
        self._ciphers: dict[bytes, AESGCM] | None = None

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Hex ids of the keys, current first: for ``doctor`` and logs, never the keys."""
        return tuple(k.hex() for k in self.key_ids_raw)

    @property
    def key_id(self) -> str:
        """The id of the key values are sealed with now."""
        return self.key_ids_raw[0].hex()

    def __repr__(self) -> str:
        return f"Sealer(key_ids={list(self.key_ids)!r})"

    __sentry_repr__ = __repr__

    def __getstate__(self) -> dict[str, Any]:
        return {"keys": self._keys.reveal()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keys"])  # type: ignore[misc]

    def _cipher(self, key_id: bytes) -> AESGCM | None:
        if self._ciphers is None:  # cryptography loads only once something is sealed
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._ciphers = {
                kid: AESGCM(key)
                for kid, key in zip(self.key_ids_raw, self._keys.reveal(), strict=True)
            }
        return self._ciphers.get(key_id)

    @staticmethod
    def _aad(header: bytes, name: str) -> bytes:
        return header + b"\x00" + name.encode("utf-8", "surrogatepass")

    def seal(self, name: str, plaintext: bytes) -> bytes:
        """``plaintext`` sealed for the entry ``name`` under the current key."""
        key_id = self.key_ids_raw[0]
        cipher = self._cipher(key_id)
        assert cipher is not None  # the current key always has a cipher
        nonce = secrets.token_bytes(NONCE_BYTES)
        header = _HEADER + key_id
        return header + nonce + cipher.encrypt(nonce, bytes(plaintext), self._aad(header, name))

    def open(self, name: str, blob: bytes) -> bytes:
        """The plaintext of ``blob`` sealed for ``name``; :class:`SealError` (naming
        the key id it was sealed with, never a key) when no listed key opens it."""
        from cryptography.exceptions import InvalidTag

        blob = bytes(blob)
        if not is_sealed(blob) or len(blob) < _PREFIX_BYTES + TAG_BYTES:
            raise SealError("the cache value is not sealed (no requests-ppauth seal header)")
        if blob[len(MAGIC)] != VERSION:
            raise SealError(
                f"the cache value is sealed in format version {blob[len(MAGIC)]}, which this "
                f"requests-ppauth does not read (it reads version {VERSION}): upgrade it"
            )
        header = blob[: len(_HEADER) + KEY_ID_BYTES]
        key_id = header[len(_HEADER) :]
        cipher = self._cipher(key_id)
        if cipher is None:
            raise SealError(
                f"the cache value was sealed with key id {key_id.hex()}, which is not among "
                f"the keys given (ids {', '.join(self.key_ids)}): list that key after the "
                "current one to read it, or let the token be fetched again",
                key_id=key_id.hex(),
            )
        nonce = blob[len(header) : _PREFIX_BYTES]
        try:
            return cipher.decrypt(nonce, blob[_PREFIX_BYTES:], self._aad(header, name))
        except InvalidTag:
            raise SealError(
                f"the cache value sealed with key id {key_id.hex()} does not open: it was "
                "changed or damaged, or copied from another entry",
                key_id=key_id.hex(),
            ) from None


def generate_key() -> str:
    """A new key: base64 (standard, padded) of 32 random bytes, for ``PPAUTH_CACHE_KEY``."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def _parse(text: str) -> list[bytes] | str:
    """The keys in ``text``, or what is wrong with it (never quoting it)."""
    items = [item.strip() for item in re.split(r"[,\s]+", text) if item.strip()]
    if not items:
        return "it is empty"
    keys: list[bytes] = []
    for position, item in enumerate(items, 1):
        which = f"key {position} of {len(items)}" if len(items) > 1 else "the key"
        try:
            key = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            return f"{which} is not base64 (standard alphabet, padded with '=')"
        if len(key) != KEY_BYTES:
            return f"{which} is base64 of {len(key)} bytes, not {KEY_BYTES}"
        keys.append(key)
    return keys


def parse_keys(value: str, setting: str) -> list[bytes]:
    """The keys in ``value`` (``PPAUTH_CACHE_KEY``'s text): one or more base64 32-byte
    keys separated by commas (or newlines, in a key file), the current one first.

    :class:`ConfigurationError` naming ``setting`` and the fix on bad input; the
    message never quotes the value, and this frame drops it before raising."""
    result = _parse(value) if isinstance(value, str) else "it is not text"
    if isinstance(result, str):
        del value
        raise ConfigurationError(f"{setting}: {result}: {FIX}")
    return result


def sealer_from_environment(
    environ: Mapping[str, str] | None = None,
    *,
    value: str | None = None,
    setting: str = KEY_VAR,
    profile: str | None = None,
) -> Sealer | None:
    """The sealer configured by ``value`` (given explicitly, e.g. a cache option),
    else by ``environ[PPAUTH_CACHE_KEY]`` (default ``os.environ``); None when neither
    is set (an empty variable counts as unset; an explicit empty ``value`` is an error,
    as it usually means a substitution that went wrong).

    The text is the keys themselves, or where they are:

    - ``file:<path>`` or an absolute path: a file holding the keys, readable by its
      owner only (:class:`UnsafeFileError` otherwise, unless
      ``PPAUTH_ALLOW_SHARED_KEY_FILE=1``, as for private key files);
    - a secret reference (``keyring:<name>``, a Key Vault secret URL): resolved by the
      installed secret resolvers; ``profile`` (default ``default``) is the profile
      name they are given (the Key Vault plugin reads its settings from it).

    Raises :class:`ConfigurationError` (or :class:`~requests_ppauth.errors.
    SecretReferenceError`) naming ``setting``; never one holding a key.
    """
    from requests_ppauth._redacted import EnvironView

    env = EnvironView(environ)  # a frame that raises must not hold os.environ
    del environ
    if value is None:
        text = Secret(env.get(KEY_VAR, "").strip(), "cache key setting")
        if not text.reveal():
            return None
    else:
        text = Secret(str(value).strip(), "cache key setting")
        del value
        if not text.reveal():
            raise ConfigurationError(f"{setting} is empty: {FIX}")
    return Sealer(_keys_from(text, setting, env, profile))


def _keys_from(
    text: Secret[str], setting: str, environ: Mapping[str, str], profile: str | None
) -> list[bytes]:
    """The keys ``text`` holds or refers to. Only references (not secrets) and key
    ids may appear in what this raises."""
    is_file = text.reveal()[:5].lower() == "file:"
    # base64 has '/': a key may start with one (1 in 64 do), so text that reads as
    # keys is keys; only what does not is taken for an absolute path
    if is_file or (os.path.isabs(text.reveal()) and isinstance(_parse(text.reveal()), str)):
        path = Path(text.reveal()[5:] if is_file else text.reveal()).expanduser()
        return parse_keys(
            _read_key_file(path, setting, environ), f"the key file {path} ({setting})"
        )
    if _SCHEME.match(text.reveal()) is None:  # base64 has no ':': a scheme is a reference
        return parse_keys(text.reveal(), setting)
    reference = text.reveal()  # a reference names a secret; it is not one
    resolved = _resolve(reference, setting, environ, profile)
    if isinstance(resolved.reveal(), bytes):
        try:
            resolved = Secret(resolved.reveal().decode("ascii"), "cache keys")
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"{reference} ({setting}) holds bytes that are not base64 text: {FIX}"
            ) from None
    return parse_keys(resolved.reveal(), f"the secret {reference} ({setting})")


def _resolve(
    reference: str, setting: str, environ: Mapping[str, str], profile: str | None
) -> Secret[Any]:
    """``reference`` resolved by the installed resolvers, as the file source resolves
    ``client_secret = "keyring:prod"``; an unknown scheme is an error naming them."""
    from requests_ppauth._redacted import SettingsView
    from requests_ppauth.plugins import get_plugins
    from requests_ppauth.source_api import SourceRequest

    request = SourceRequest(
        profile=profile or "default",
        settings=SettingsView({}),
        environ=environ,
        resolvers=get_plugins().resolvers(),
    )
    resolved = Secret(request.resolve({"ref": reference}, setting), "cache keys")
    if not isinstance(resolved.reveal(), str | bytes):
        raise ConfigurationError(f"{reference} ({setting}) resolved to no text: {FIX}")
    return resolved


def _read_key_file(path: Path, setting: str, environ: Mapping[str, str]) -> str:
    """The text of the key file at ``path``: it must be the owner's alone, as private
    key files are (:mod:`requests_ppauth.sources._certfile`)."""
    from requests_ppauth.sources._certfile import ALLOW_SHARED_VAR

    try:
        mode = path.stat().st_mode  # follows links: Kubernetes mounts secrets through them
        data = Secret(path.read_bytes(), "cache keys")
    except FileNotFoundError:
        raise ConfigurationError(
            f"{setting} names the key file {path}, which does not exist: {FIX}, "
            "and write it there (chmod 600)"
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(f"{setting} names {path}, a directory, not a key file") from None
    except PermissionError:
        raise ConfigurationError(
            f"{setting} names the key file {path}, which this user cannot read"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the key file {path} ({setting}): {exc.strerror}"
        ) from None
    shared = stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO)
    if (
        shared
        and os.name != "nt"
        and environ.get(ALLOW_SHARED_VAR, "").lower()
        not in {
            "1",
            "true",
            "yes",
            "on",
        }
    ):
        del data
        raise UnsafeFileError(
            f"{setting} names the key file {path}, which holds the token cache's key but is "
            f"readable by others (mode {stat.S_IMODE(mode):o}): run `chmod 600 {path}`; for "
            "a Kubernetes secret volume set `defaultMode: 0400`, or, for a read-only mount "
            f"that cannot be made private, set {ALLOW_SHARED_VAR}=1"
        )
    try:
        return data.reveal().decode("ascii")
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"the key file {path} ({setting}) is not base64 text: {FIX}"
        ) from None
