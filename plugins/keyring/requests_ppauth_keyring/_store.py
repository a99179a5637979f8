"""Reading and writing the OS keyring through the ``keyring`` library.

Everything that touches ``keyring`` goes through here, for three reasons:

- ``keyring`` is imported on first use, not when the entry point is loaded: a process
  whose credential comes from the environment never pays for it.
- A missing, disabled or broken backend becomes one :class:`KeyringBackendError` whose
  message says what to install or unlock; callers turn it into the error their contract
  asks for (:class:`~requests_ppauth.SourceError`, :class:`~requests_ppauth.SecretReferenceError`).
  Users never see a traceback from inside ``keyring`` or D-Bus.
- Calls are serialised by one lock: keyring backends make no promise about threads
  (the file backends rewrite one file; Secret Service opens a D-Bus connection per call).
- Every call into the backend is bounded (:data:`TIMEOUT_VAR`, default
  :data:`DEFAULT_TIMEOUT` seconds): a stopped or hung agent (gnome-keyring-daemon under
  SIGSTOP, a D-Bus that never answers) used to hold the lookup forever; now it is a
  :class:`KeyringBackendError` saying so. The default is long enough for a person to
  answer an unlock prompt; a batch job may set it shorter.

Naming, documented for users who store secrets with other tools (``keyring set``,
``secret-tool``): service ``requests-ppauth`` (:data:`SERVICE`, or a profile's
``[profiles.<name>.keyring] service``), username ``<profile>:<field>``
(:func:`profile_username`), where field is one of :data:`FIELDS`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from requests_ppauth import PPAuthError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

log = logging.getLogger("requests_ppauth_keyring")
T = TypeVar("T")

SERVICE = "requests-ppauth"
"""The keyring service name secrets are stored under unless a profile names another."""

FIELDS = ("client_secret", "certificate_password", "password")
"""The secret fields of a profile, named as in the config file."""

CLI = "python -m requests_ppauth_keyring"

INSTALL_HINT = (
    "install a keyring backend: a Secret Service such as GNOME Keyring (Debian/Ubuntu: "
    "`apt-get install gnome-keyring dbus`, running in a D-Bus session with the keyring "
    "unlocked), or `pip install keyrings.alt` for a file-based keyring "
    "(PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring)"
)

_lock = threading.RLock()

TIMEOUT_VAR = "PPAUTH_KEYRING_TIMEOUT"
DEFAULT_TIMEOUT = 30.0


def call_timeout() -> float:
    """Seconds a keyring call may take: ``PPAUTH_KEYRING_TIMEOUT``, else the default."""
    text = os.environ.get(TIMEOUT_VAR, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 < value <= 3600):
        raise KeyringBackendError(
            f"{TIMEOUT_VAR}={text!r}: a number of seconds, more than 0 and at most 3600"
        )
    return value


def _bounded(action: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread, waited for at most :func:`call_timeout` seconds
    (the worker is a daemon: a backend stuck in D-Bus cannot keep the process alive)."""
    timeout = call_timeout()
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="ppauth-keyring-call", daemon=True).start()
    if not done.wait(timeout):
        raise KeyringBackendError(
            f"the keyring backend did not answer within {timeout:g} s while trying to "
            f"{action} (a stopped or hung agent, or an unlock prompt nobody answered): "
            f"check the keyring daemon, or set {TIMEOUT_VAR} to wait longer"
        )
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


class KeyringBackendError(PPAuthError, RuntimeError):
    """The keyring cannot be used: no backend, disabled, locked, or the backend failed.

    The message says which backend and what to do; it never holds a secret.
    """


def profile_username(profile: str, field: str) -> str:
    """The keyring username for ``field`` of ``profile``: ``"<profile>:<field>"``.

    The field comes last and has no colon, so a profile name containing ``:`` still
    maps to exactly one username.
    """
    check_field(field)
    if not profile:
        raise ValueError("the profile name is empty")
    return f"{profile}:{field}"


def check_field(field: str) -> None:
    """Refuse a field the sources would never read (a typo would store a dead secret)."""
    if field not in FIELDS:
        raise ValueError(f"unknown secret field {field!r}; one of: {', '.join(FIELDS)}")


def describe(backend: KeyringBackend) -> str:
    """A backend's class name, for messages (its repr may be long, never secret)."""
    kind = type(backend)
    return f"{kind.__module__}.{kind.__qualname__}"


def backend() -> KeyringBackend:
    """The keyring backend in use, if it can store secrets.

    :raises KeyringBackendError: no usable backend (keyring's ``fail`` backend, a
        chainer with nothing to chain), the ``null`` backend (keyring disabled), or a
        backend named by ``PYTHON_KEYRING_BACKEND`` / ``keyringrc.cfg`` that cannot load.
    """
    import keyring
    from keyring.backends import chainer, fail, null

    try:
        found = keyring.get_keyring()
    # keyring loads a configured backend by name and checks its priority, which raises
    # RuntimeError when its daemon is absent, ImportError/AttributeError for a bad name.
    except (RuntimeError, ImportError, AttributeError, ValueError) as exc:
        raise KeyringBackendError(
            f"the configured keyring backend cannot be used ({type(exc).__name__}: {exc}): "
            f"fix PYTHON_KEYRING_BACKEND or keyringrc.cfg, or {INSTALL_HINT}"
        ) from None
    if isinstance(found, fail.Keyring) or (
        isinstance(found, chainer.ChainerBackend) and not list(found.backends)
    ):
        raise KeyringBackendError(f"no usable keyring backend: {INSTALL_HINT}")
    if isinstance(found, null.Keyring):
        raise KeyringBackendError(
            "the keyring is disabled (keyring.backends.null.Keyring is configured through "
            "PYTHON_KEYRING_BACKEND or keyringrc.cfg): configure a real backend, or "
            f"{INSTALL_HINT}"
        )
    return found


def _failure(action: str, exc: Exception) -> str:
    """What went wrong, in words safe to show.

    keyring's own errors carry messages written for users; any other exception is named
    by its class only, because its text may quote what the backend holds (a parse error
    in a keyring file quotes the offending line).
    """
    from keyring.errors import KeyringError, KeyringLocked

    if isinstance(exc, KeyringLocked):
        return (
            f"the keyring is locked, so it cannot {action}: unlock it (log in to the "
            "desktop session, or start gnome-keyring-daemon with --unlock) and retry"
        )
    kind = type(exc)
    what = f"{kind.__name__}: {exc}" if isinstance(exc, KeyringError) else kind.__qualname__
    if kind.__module__ != "builtins":
        what = f"{kind.__module__}.{what}"
    return f"the keyring backend failed to {action} ({what})"


def get(service: str, username: str) -> str | None:
    """The secret stored for ``username`` in ``service``, or ``None``."""
    with _lock:
        action = f"read {username!r} in service {service!r}"
        found = _bounded(action, backend)  # choosing a backend probes D-Bus too
        try:
            value = _bounded(action, lambda: found.get_password(service, username))
        except KeyringBackendError:
            raise
        # Any failure inside a backend (keyring errors, D-Bus errors, file errors) is a
        # clear error naming the backend, never a traceback from its internals.
        except Exception as exc:
            # the class only, never exc_info: a backend's message or locals may hold secrets
            log.debug("keyring read failed (%s, %r): %s", service, username, type(exc).__name__)
            raise KeyringBackendError(
                _failure(f"read {username!r} in service {service!r}", exc) + f" [{describe(found)}]"
            ) from None
    log.debug(
        "keyring %s: %r in service %r", "hit" if value is not None else "miss", username, service
    )
    return value


def put(service: str, username: str, value: str) -> None:
    """Store ``value`` for ``username`` in ``service``, replacing what was there."""
    if not isinstance(value, str):
        raise TypeError("a keyring secret is text (str)")
    if not value:
        raise ValueError("refusing to store an empty secret")
    with _lock:
        action = f"store {username!r} in service {service!r}"
        found = _bounded(action, backend)
        try:
            _bounded(action, lambda: found.set_password(service, username, value))
        except KeyringBackendError:
            raise
        except Exception as exc:
            log.debug("keyring write failed (%s, %r): %s", service, username, type(exc).__name__)
            message = _failure(f"store {username!r} in service {service!r}", exc)
            raise KeyringBackendError(
                message.replace(value, "***") + f" [{describe(found)}]"
            ) from None
    log.debug("keyring: stored %r in service %r", username, service)


def remove(service: str, username: str) -> bool:
    """Delete the secret for ``username`` in ``service``; ``False`` if there was none."""
    with _lock:
        if get(service, username) is None:
            return False
        action = f"delete {username!r} in service {service!r}"
        found = _bounded(action, backend)
        try:
            _bounded(action, lambda: found.delete_password(service, username))
        except KeyringBackendError:
            raise
        except Exception as exc:
            log.debug("keyring delete failed (%s, %r): %s", service, username, type(exc).__name__)
            raise KeyringBackendError(
                _failure(f"delete {username!r} in service {service!r}", exc)
                + f" [{describe(found)}]"
            ) from None
    log.debug("keyring: deleted %r in service %r", username, service)
    return True


def set_secret(profile: str, field: str, value: str, service: str = SERVICE) -> None:
    """Store ``field`` (client_secret, certificate_password, password) of ``profile``.

    This is where the ``keyring`` source looks: service ``service`` (the profile's
    ``[profiles.<name>.keyring] service`` if it sets one), username
    ``"<profile>:<field>"``. The non-secret parts (tenant_id, client_id, username,
    certificate_path) stay in the config file.

    :raises KeyringBackendError: no usable backend, or the backend refused.
    :raises ValueError: unknown field, empty profile name or empty value.
    """
    put(service, profile_username(profile, field), value)


def delete_secret(profile: str, field: str, service: str = SERVICE) -> bool:
    """Remove what :func:`set_secret` stored; ``False`` when nothing was stored.

    :raises KeyringBackendError: no usable backend, or the backend refused.
    """
    return remove(service, profile_username(profile, field))


def has_secret(profile: str, field: str, service: str = SERVICE) -> bool:
    """Whether the keyring holds ``field`` of ``profile`` (the value is not returned).

    :raises KeyringBackendError: no usable backend, or the backend failed.
    """
    return get(service, profile_username(profile, field)) is not None
