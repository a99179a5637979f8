"""Reading a certificate file for a certificate credential, with errors that say which.

The file holds the private key, so it is held to the rule the config file's plaintext
secrets are: readable and writable by its owner only, else refused (``chmod 600``).
Read-only secret mounts that cannot be made private (Kubernetes mounts secret volumes
0644 unless told ``defaultMode: 0400``) opt out with ``PPAUTH_ALLOW_SHARED_KEY_FILE=1``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from requests_ppauth.errors import SourceError, UnsafeFileError

ALLOW_SHARED_VAR = "PPAUTH_ALLOW_SHARED_KEY_FILE"
_TRUE = {"1", "true", "yes", "on"}


def read_certificate(
    source: str, path_text: str, setting: str, *, environ: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of the PEM or PKCS#12 file at ``path_text`` (named ``setting``).

    Raises :class:`UnsafeFileError` when group or others may read or write the file
    (the mode of a symbolic link's target: Kubernetes mounts secrets through
    ``..data`` links), unless ``environ`` (default ``os.environ``) sets
    ``PPAUTH_ALLOW_SHARED_KEY_FILE``. No frame that error passes through holds the
    key's bytes: error reporters record locals.
    """
    path = Path(path_text).expanduser()
    try:
        mode = path.stat().st_mode  # follows links: the key's own file counts
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(source, f"{setting} points to {path}, which does not exist") from None
    except IsADirectoryError:
        raise SourceError(source, f"{setting} points to {path}, a directory") from None
    except PermissionError:
        raise SourceError(
            source, f"{setting} points to {path}, which this user cannot read"
        ) from None
    except OSError as exc:
        raise SourceError(source, f"cannot read {setting} {path}: {exc.strerror}") from None
    if not data.strip():
        raise SourceError(source, f"{setting} {path} is empty")
    try:
        _check_mode(source, setting, path, mode, environ)
    except UnsafeFileError:
        del data  # out of this frame's locals before an error report records them
        raise
    return data


def _check_mode(
    source: str, setting: str, path: Path, mode: int, environ: Mapping[str, str] | None
) -> None:
    """Refuse a key file group or others may read or write, unless opted out.

    ``environ`` is looked up in place: a local holding ``os.environ`` would put every
    variable in an error report."""
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return
    if os.name == "nt":  # no permission bits to speak of: st_mode says 0666 for every file
        return
    if (os.environ if environ is None else environ).get(ALLOW_SHARED_VAR, "").lower() in _TRUE:
        return
    raise UnsafeFileError(
        f"[{source}] {setting} points to {path}, which holds a private key but is "
        f"readable by others (mode {stat.S_IMODE(mode):o}): run `chmod 600 {path}`; "
        "for a Kubernetes secret volume set `defaultMode: 0400`, or, for a read-only "
        f"mount that cannot be made private, set {ALLOW_SHARED_VAR}=1"
    )
