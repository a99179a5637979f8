"""Logging and warnings for the command: quiet by default, DEBUG with ``--verbose``.

The library never logs a secret; this handler redacts anyway (tokens, bearer headers,
``secret=``/``password=``/``device_code=`` fields, and the secret values of the
``PPAUTH_``/``AZURE_`` variables), because ``--verbose`` also turns on msal's and
urllib3's loggers.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import TextIO

REDACTED = "[redacted]"
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# device_code: whoever holds it collects the tokens of the sign-in it started
_NAMES = r"client_secret|password|access_token|refresh_token|id_token|client_assertion|device_code"
_FORM_FIELD = re.compile(rf"(?i)\b((?:{_NAMES})=)[^&\s]+")
_JSON_FIELD = re.compile(rf'(?i)("(?:{_NAMES}|secret)"\s*:\s*")[^"]*')
_SECRET_VARIABLES = ("CLIENT_SECRET", "PASSWORD", "CLIENT_CERTIFICATE_PASSWORD")
# msal's token cache logs each grant's request data: the device (or authorization) code
# under "code". Only msal's records: elsewhere "code" is an API's harmless error code.
_MSAL_CODE = re.compile(r'("code"\s*:\s*")[^"]*')


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with tokens and secrets replaced by ``[redacted]``."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(r"\1" + REDACTED, text)
    text = _FORM_FIELD.sub(r"\1" + REDACTED, text)
    return _JSON_FIELD.sub(r"\1" + REDACTED, text)


def _environment_secrets() -> tuple[str, ...]:
    found = {
        os.environ.get(prefix + name, "")
        for prefix in ("PPAUTH_", "AZURE_")
        for name in _SECRET_VARIABLES
    }
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


class RedactingFilter(logging.Filter):
    """Formats the record's message now and redacts it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = _environment_secrets()

    def filter(self, record: logging.LogRecord) -> bool:
        text = redact(record.getMessage(), self.secrets)
        if record.name.startswith("msal"):
            text = _MSAL_CODE.sub(r"\1" + REDACTED, text)
        record.msg = text
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


# what was shown on stderr as a warning: a library that both logs at WARNING and calls
# warnings.warn (the Redis plugin, so that log collectors and Python's warnings filters
# both see an outage) would otherwise print each line twice
_shown: set[str] = set()


class _OnceFilter(logging.Filter):
    """Drops a WARNING record whose text was shown already (as a warning)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = " ".join(record.getMessage().split())
        if text in _shown:
            return False
        _shown.add(text)
        return True


def setup(verbose: bool, stream: TextIO | None = None) -> None:
    """Send log records to stderr: warnings only, or everything with ``verbose``."""
    _shown.clear()  # one command, one set (tests run several commands in one process)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.addFilter(_OnceFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
    else:
        handler.setFormatter(logging.Formatter("ppauth: warning: %(message)s"))
        root.setLevel(logging.WARNING)
    warnings.showwarning = _show_warning


def warn(message: str) -> None:
    """One warning line on stderr."""
    sys.stderr.write(f"ppauth: warning: {redact(message)}\n")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    text = " ".join(redact(str(message)).split())
    if text in _shown:
        return
    _shown.add(text)
    (file or sys.stderr).write(f"ppauth: warning: {text}\n")
