"""Hook specifications for requests-ppauth plugins (entry-point group ``requests_ppauth``).

A plugin is a module or object with functions marked ``@requests_ppauth.hookimpl``.
Every hook here *registers* objects through a callback rather than returning them:
the host owns ordering, de-duplication and validation (the pattern of llm's
``register_models`` and tox's ``tox_register_tox_env``). An implementation that
returns a value instead is an error naming the plugin and the hook, as is one that
raises or registers the wrong thing; a hook name that matches no spec (a typo) is an
error suggesting the right one. For a plugin installed through an entry point these
errors are warnings and the plugin is skipped (``PPAUTH_DISABLE_PLUGINS=<name>``
silences it); see :mod:`requests_ppauth.plugins`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from requests_ppauth.cache import CacheBackend
    from requests_ppauth.source_api import CredentialSource, SecretResolver

    # what ArgumentParser.add_subparsers() returns (typeshed's name for it is private)
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROJECT = "requests_ppauth"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ppauth_register_sources(register: Callable[[CredentialSource], None]) -> None:
    """Register credential sources by calling ``register(source)`` once for each.

    :param register: takes an object satisfying
        :class:`requests_ppauth.source_api.CredentialSource`: an *instance* (not the
        class) with a ``str`` ``name``, an ``int`` ``priority`` and
        ``credential(request)``. Names must be unique across plugins; a duplicate is
        an error that names both.
    :return: nothing (returning a value, such as a list of sources, is an error: it
        would register nothing). Every plugin's implementation runs.

    Precedence is data: sources are consulted by ascending ``priority`` (built-ins:
    ``env`` 10, ``file`` 20, ``github_actions`` 80, ``managed_identity`` 90), unless the profile's
    ``sources`` list or the ``sources=`` argument names an order. ``credential``
    returns ``None`` to decline (calling ``request.note(reason)`` first, so "no
    credential" errors and :func:`requests_ppauth.source_api.explain_sources` can say
    why) and raises :class:`requests_ppauth.SourceError` when it recognises the
    request but cannot complete it. Any other exception it raises stops the lookup
    with a :class:`requests_ppauth.errors.PluginError` naming the source and plugin.
    """


@hookspec
def ppauth_register_secret_resolvers(register: Callable[[SecretResolver], None]) -> None:
    """Register resolvers for secret references by calling ``register(resolver)``.

    :param register: takes an object satisfying
        :class:`requests_ppauth.source_api.SecretResolver` (``name``, ``schemes``,
        ``claims(reference)``, ``resolve(reference, request)``).
    :return: nothing; every plugin's implementation runs.

    A reference is a config or environment value such as ``keyring:prod`` or
    ``https://myvault.vault.azure.net/secrets/name``: the first resolver whose
    ``claims`` returns true resolves it. An unclaimed ``{ ref = "..." }`` value is a
    :class:`requests_ppauth.SecretReferenceError`, and so is an unclaimed string of the
    shape ``scheme:rest`` (a lower-case scheme of two characters or more, no
    whitespace): it is never sent as a literal secret. ``literal:<secret>`` writes a
    secret that only looks like a reference.
    """


@hookspec
def ppauth_register_cache_backends(
    register: Callable[[str, Callable[[Mapping[str, Any]], CacheBackend]], None],
) -> None:
    """Register token cache backends by name: ``register("redis", make_redis_cache)``.

    :param register: takes a name and a factory. The factory is called with the
        backend's options, a mapping: the other keys of a profile's
        ``cache = { backend = "redis", url = "..." }`` table, or ``{}`` when the
        backend is named bare (``PPAUTH_CACHE=redis``, ``cache = "redis"``,
        ``PowerPlatformAuth(cache="redis")``, ``ppauth --cache redis``). When the
        profile in use has a table named like the backend (``[profiles.<name>.redis]``),
        its keys are options too, under the explicit ones. The factory reads
        anything else (``PPAUTH_REDIS_URL``) itself, and raises ``ValueError`` for
        options it does not know (shown as a :class:`~requests_ppauth.ConfigurationError`
        naming the setting). It returns an object satisfying
        :class:`requests_ppauth.cache.CacheBackend`:

        - ``get(keys)``: the entries (JSON objects) at ``keys`` that exist, costing
          O(len(keys)), never O(size of the cache): the core reads one or two keys
          per acquisition;
        - ``apply(ops)``: a batch of :class:`requests_ppauth.cache.Op`, atomically
          and in order. An ``Op`` puts an entry, deletes it, deletes it only while
          its top-level ``"secret"`` field equals ``if_secret`` exactly (a token a
          server rejected is dropped, never the newer one another process stored),
          or patches ``fields`` (a ``None`` value removes a field; an entry left
          empty is deleted). ``apply_ops`` in ``requests_ppauth.cache`` is the
          reference semantics;
        - ``read_all()``: every entry, for listing, ``cache clear``, ``logout`` and
          ``doctor``; never on the way to a token;
        - ``key_lock(key, timeout)`` / ``try_key_lock(key)``: the single-flight lock
          every process using the store agrees on, yielding whether it is held;
        - ``location``: where it lives, for messages (no secret in it).

        Failures raise :class:`requests_ppauth.CacheError`: the core then gets a token
        without the cache (a warning says so). Any other exception is a bug in the
        backend; the core reports it as a ``CacheError`` naming the backend.
        Pruning is the backend's business and optional: it may drop an entry whose
        numeric ``expires_on`` is more than ``requests_ppauth.cache.PRUNE_AFTER``
        seconds past (``prunable(entry)``), and nothing else; entries without
        ``expires_on`` (msal's sign-ins) stay until the core deletes them.
        ``requests_ppauth.testing.cache_contract.CacheBackendContract`` is the test
        suite a backend must pass. ``file`` and ``memory`` are built in.
    :return: nothing; every plugin's implementation runs. A duplicate name (a built-in
        one included) is an error.
    """


@hookspec
def ppauth_register_commands(
    register: Callable[[Callable[[SubParsers], None]], None],
) -> None:
    """Add subcommands to the ``ppauth`` command: ``register(add_commands)``.

    :param register: takes a callable ``add_commands(subparsers)``. ``ppauth`` calls it
        with its argparse subparsers (what ``ArgumentParser.add_subparsers()``
        returned); it adds one or more commands with ``subparsers.add_parser(name,
        help=...)`` and gives each ``set_defaults(func=handler)``, where
        ``handler(args: argparse.Namespace)`` returns the exit status (``None``
        means 0). A handler reports failure by raising
        :class:`requests_ppauth.PPAuthError` (shown as one line and a hint, exit
        status 1) or returning a non-zero status. The keyring plugin's
        ``requests_ppauth_keyring.register_cli`` is such a callable.
    :return: nothing; every plugin's implementation runs, and ``ppauth`` calls the
        registered callables in registration order when it builds its parser. A
        name that is already taken (a built-in command or another plugin's) and a
        callable that raises are reported as a warning naming the plugin; the
        rest of ``ppauth`` keeps working.
    """
