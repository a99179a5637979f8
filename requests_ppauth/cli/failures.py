"""How a failure reaches the terminal: one line saying what failed, one saying what to do.

Library errors (:class:`~requests_ppauth.PPAuthError`) already name the setting and the
fix; here they are cut into those two parts. Errors of the command line itself are
:class:`CLIError` (exit status 1) and :class:`UsageError` (exit status 2).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from requests_ppauth.errors import (
    CacheError,
    ConfigurationError,
    HostNotAllowedError,
    InsecureTransportError,
    NoCredentialError,
    PluginError,
    PPAuthError,
    SourceError,
    TokenAcquisitionError,
    UnsafeFileError,
)


class CLIError(Exception):
    """A failure of a command: ``message`` (one line) and ``hint`` (what to do)."""

    status = 1

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CLIError):
    """The command line itself is wrong (exit status 2)."""

    status = 2


# Where a library message turns from what failed to what to do, earliest first.
_ADVICE = (
    ": run ",
    "; run ",
    ": pip install ",
    ". If ",
    ". Set ",
    ". Remove ",
    ": put ",
    ": set ",
    ": remove ",
    ": use ",
    ": pass ",
    ": check ",
)
_DEFAULT_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (SourceError, "`ppauth sources` shows what each credential source saw"),
    (UnsafeFileError, "make the file readable by you only (chmod 600)"),
    (CacheError, "`ppauth doctor` checks the cache `ppauth cache path` names (any backend)"),
    (ConfigurationError, "`ppauth doctor` checks the configuration and the credential"),
    (PPAuthError, "`ppauth doctor` checks the whole setup"),
)


def one_line(text: str) -> str:
    """``text`` with its lines joined, for a message that must fit on one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def split_advice(text: str) -> tuple[str, str | None]:
    """``("what failed", "what to do")`` from a library message, when it has both."""
    best: tuple[int, str] | None = None
    for marker in _ADVICE:
        at = text.find(marker)
        if at > 0 and (best is None or at < best[0]):
            best = (at, marker)
    if best is None:
        return text, None
    at, marker = best
    advice = marker.lstrip(":;. ") + text[at + len(marker) :]
    return text[:at].rstrip(), advice.strip().rstrip(".")


def describe(exc: BaseException) -> tuple[str, str]:
    """The error line and the hint line for ``exc``."""
    if isinstance(exc, CLIError):
        return one_line(exc.message), one_line(exc.hint)
    if isinstance(exc, NoCredentialError):
        return _no_credential(exc)
    if isinstance(exc, PluginError):  # the plugin's fault, in its own words: never "report it"
        return one_line(exc.problem), one_line(exc.hint)
    if isinstance(exc, TokenAcquisitionError):
        return _token_error(exc)
    if isinstance(exc, InsecureTransportError):
        line, advice = split_advice(one_line(str(exc)))
        return line, advice or "use https"
    if isinstance(exc, HostNotAllowedError):
        return _host_not_allowed(exc)
    if isinstance(exc, PPAuthError):
        line, advice = split_advice(one_line(str(exc)))
        return line, advice or next(h for t, h in _DEFAULT_HINTS if isinstance(exc, t))
    return _other(exc)


def _no_credential(exc: NoCredentialError) -> tuple[str, str]:
    """One reason per line (as ``str(exc)`` has them), and the error's own hint: the
    same text with or without ``--verbose``."""
    return exc.summary(), exc.hint


def _token_error(exc: TokenAcquisitionError) -> tuple[str, str]:
    lines = str(exc).splitlines()
    line = lines[0]
    if exc.correlation_id:
        line += f" (correlation id {exc.correlation_id})"
    if exc.hint:
        return line, exc.hint
    line, advice = split_advice(line)
    return line, advice or (
        "`ppauth doctor` checks the credential, the authority host and the clock"
    )


def _host_not_allowed(exc: HostNotAllowedError) -> tuple[str, str]:
    text = one_line(str(exc))
    prefix = "refusing to send a Power Platform token to "
    if text.startswith(prefix) and ": it is not" in text:
        host = text[len(prefix) :].split(": it is not", 1)[0]
        return text.split(". If it should", 1)[0], (
            f"if {host} should get a token, pass --host-scope {host}=SCOPE "
            f"(or --allow-host {host} with --scope SCOPE)"
        )
    line, advice = split_advice(text)
    return line, advice or "check the URL"


def _other(exc: BaseException) -> tuple[str, str]:
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS verification failed for {_host_of(exc)}",
            "if the host uses a private CA, pass --ca-bundle FILE (or set PPAUTH_CA_BUNDLE)",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{_host_of(exc)} did not answer in time", "check the URL and the network"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"cannot reach {_host_of(exc)}", "check the URL, the host's port and the network"
    if isinstance(exc, requests.exceptions.RequestException):
        return f"request failed: {type(exc).__name__}", "check the URL"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{':' if where else ''}{where}", "check the path and its permissions"
    first = one_line(str(exc))[:200]
    return (
        f"unexpected {type(exc).__name__}{': ' + first if first else ''}",
        "rerun with --verbose for the traceback, and please report it",
    )


def _host_of(exc: BaseException) -> str:
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    if url:
        parts = urlsplit(str(url))
        return parts.netloc or str(url)
    return "the host"
