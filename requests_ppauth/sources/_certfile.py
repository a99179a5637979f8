"""Reading a certificate file for a certificate credential, with errors that say which."""

from __future__ import annotations

from pathlib import Path

from requests_ppauth.errors import SourceError


def read_certificate(source: str, path_text: str, setting: str) -> bytes:
    """The bytes of the PEM or PKCS#12 file at ``path_text`` (named ``setting``)."""
    path = Path(path_text).expanduser()
    try:
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
    return data
