"""OS keyring support for requests-ppauth: a credential source and ``keyring:`` references.

Installed, it registers through the ``requests_ppauth`` entry-point group:

- the ``keyring`` credential source (priority 30, after ``env`` and ``file``): the
  profile's identifiers come from the config file, its secret from the OS keyring
  (service ``requests-ppauth``, username ``<profile>:<field>``);
- a resolver for ``keyring:<name>`` and ``keyring:<service>/<name>`` references, usable
  in any secret setting or variable (``client_secret = "keyring:prod"``).

Store secrets with :func:`set_secret` or ``python -m requests_ppauth_keyring set PROFILE
FIELD`` (the value comes from stdin or a no-echo prompt, never from the command line).
Importing this package imports neither ``keyring`` nor a backend: that waits for the
first lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from requests_ppauth import CredentialSource, SecretResolver, hookimpl
from requests_ppauth_keyring._cli import main, register_cli
from requests_ppauth_keyring._resolver import KeyringResolver, parse_reference
from requests_ppauth_keyring._source import KeyringSource
from requests_ppauth_keyring._store import (
    FIELDS,
    SERVICE,
    KeyringBackendError,
    delete_secret,
    has_secret,
    profile_username,
    set_secret,
)

__all__ = [
    "FIELDS",
    "SERVICE",
    "KeyringBackendError",
    "KeyringResolver",
    "KeyringSource",
    "delete_secret",
    "has_secret",
    "main",
    "parse_reference",
    "profile_username",
    "register_cli",
    "set_secret",
]


@hookimpl
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register the ``keyring`` source."""
    register(KeyringSource())


@hookimpl
def ppauth_register_secret_resolvers(register: Callable[[SecretResolver], None]) -> None:
    """Register the ``keyring:`` reference resolver."""
    register(KeyringResolver())


@hookimpl
def ppauth_register_commands(register: Callable[[Callable[[Any], None]], None]) -> None:
    """Mount ``ppauth keyring set|delete|get-status`` (the same as ``python -m
    requests_ppauth_keyring``)."""
    register(register_cli)
