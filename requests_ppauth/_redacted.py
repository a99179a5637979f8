"""Holders whose repr hides what they hold: a secret, msal's credential dict, the
environment, a profile's settings.

Error reporters (Sentry and the like) and ``pytest --showlocals`` record the locals
of every frame a traceback passes through, by their repr. A password held as a local
of a frame that raises, or passed as an argument to one, ends up in the error report;
so does every variable of ``os.environ`` (``PPAUTH_CLIENT_SECRET`` included) when a
function that raises holds it. Frames that can raise hold these instead.

Each class also has ``__sentry_repr__``: Sentry's serializer walks any ``Mapping``
item by item (bypassing ``__repr__``) unless the type defines it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Secret(Generic[T]):
    """A value out of sight: ``reveal()`` gives it back, ``repr`` names only ``what``."""

    __slots__ = ("_value", "what")

    def __init__(self, value: T, what: str = "secret") -> None:
        self._value = value
        self.what = what

    def reveal(self) -> T:
        """The value itself: use it in an expression, do not keep it in a local."""
        return self._value

    def __repr__(self) -> str:
        return f"<{self.what}: hidden>"

    __sentry_repr__ = __repr__


class HiddenText(str):
    """A ``str`` (so libraries that check ``isinstance(x, str)`` take it) that does not
    show itself in a repr: the private key PEM inside msal's own frames."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<hidden text: {len(self)} characters>"

    __sentry_repr__ = __repr__


class SecretDict(dict[str, Any]):
    """A ``dict`` whose repr names its keys, never its values: secrets by name (a
    source's resolved secrets; msal's ``client_credential``, a local of our frame and
    of msal's while msal's constructor talks to the network: msal checks
    ``isinstance(client_credential, dict)``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secrets: {', '.join(map(str, self)) or 'none'}>"

    __sentry_repr__ = __repr__


class EnvironView(Mapping[str, str]):
    """The environment (``os.environ`` by default, read live), read-only, with a repr
    that counts the variables instead of listing them.

    Still a ``Mapping``: it is what sources (third-party ones too) get as
    ``SourceRequest.environ``.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        if isinstance(environ, EnvironView):
            environ = environ._environ
        self._environ: Mapping[str, str] = os.environ if environ is None else environ

    def __getitem__(self, name: str) -> str:
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def __contains__(self, name: object) -> bool:
        return name in self._environ

    def __repr__(self) -> str:
        return f"<environment: {len(self._environ)} variables>"

    __sentry_repr__ = __repr__


class SettingsView(Mapping[str, Any]):
    """A profile's settings, read-only, with a repr that names the keys, not the values
    (``client_secret``, ``certificate_password`` and ``password`` may be literals):
    what sources get as ``SourceRequest.settings``. Values come back as they are, so
    a plugin's ``[profiles.<name>.<plugin>]`` table is still the dict it was."""

    __slots__ = ("_settings",)

    def __init__(self, settings: Mapping[str, Any]) -> None:
        if isinstance(settings, SettingsView):
            settings = settings._settings
        self._settings: Mapping[str, Any] = settings

    def __getitem__(self, key: str) -> Any:
        return self._settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def __contains__(self, key: object) -> bool:
        return key in self._settings

    def __repr__(self) -> str:
        return f"<settings: {', '.join(map(str, self._settings)) or 'none'}>"

    __sentry_repr__ = __repr__
