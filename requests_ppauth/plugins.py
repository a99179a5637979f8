"""The plugin manager: built-ins and entry points, loaded lazily, once, under control.

Nothing happens at import. The first credential lookup loads the built-in
sources and every ``requests_ppauth`` entry point except those named in
``PPAUTH_DISABLE_PLUGINS`` (comma-separated plugin names, built-ins included),
then checks that every hook implementation matches a spec. The name ``*`` blocks
every plugin that comes from an entry point, keeping the built-ins (what a test
suite of the core itself wants).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from requests_ppauth import hookspecs
from requests_ppauth._redacted import EnvironView, SettingsView
from requests_ppauth.config import Profile
from requests_ppauth.credentials import Credential
from requests_ppauth.errors import (
    ConfigurationError,
    InvalidCredentialError,
    NoCredentialError,
    PPAuthError,
    SourceError,
)
from requests_ppauth.source_api import CredentialSource, SecretResolver, SourceRequest

if TYPE_CHECKING:
    from requests_ppauth.hookspecs import SubParsers

BUILTINS = (
    "requests_ppauth.sources.env",
    "requests_ppauth.sources.file",
    "requests_ppauth.sources.managed",
)
DISABLE_VAR = "PPAUTH_DISABLE_PLUGINS"


class PluginRegistrationError(PPAuthError, TypeError):
    """A plugin registered something that breaks the contract (bad type, duplicate name)."""


class Plugins:
    """Typed facade over ``pm.hook``: internal code never calls pluggy directly."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = EnvironView(environ)  # a plugin's import can raise: no os.environ in this frame
        self.blocked = frozenset(
            n.strip() for n in env.get(DISABLE_VAR, "").split(",") if n.strip()
        )
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for name in self.blocked:
            self.pm.set_blocked(name)
        import importlib

        for module_name in BUILTINS:
            short = module_name.rsplit(".", 1)[1]
            if short not in self.blocked:
                self.pm.register(importlib.import_module(module_name), name=short)
        if "*" in self.blocked:  # every plugin from an entry point; built-ins stay
            import importlib.metadata

            for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
                self.pm.set_blocked(ep.name)
        self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        self.pm.check_pending()
        self._sources: list[CredentialSource] | None = None
        self._resolvers: list[SecretResolver] | None = None

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object at run time (for apps and tests without entry points)."""
        self.pm.register(plugin, name=name)
        self._sources = self._resolvers = None
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            # leave no unknown hook behind: it would fail every later register()
            self.pm.unregister(plugin)
            raise

    def unregister(self, name: str) -> None:
        """Remove a plugin registered by :meth:`register`."""
        self.pm.unregister(name=name)
        self._sources = self._resolvers = None

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins (built-ins and entry points)."""
        return sorted(n for n, p in self.pm.list_name_plugin() if p is not None)

    def sources(self) -> list[CredentialSource]:
        """Every registered source, by ascending ``priority`` then name."""
        if self._sources is None:
            found: dict[str, CredentialSource] = {}

            def register(source: Any) -> None:
                if not isinstance(source, CredentialSource):
                    raise PluginRegistrationError(
                        f"{source!r} is not a credential source: it needs name, priority "
                        "and credential(request)"
                    )
                if source.name in found:
                    raise PluginRegistrationError(
                        f"two plugins register a source named {source.name!r}: "
                        f"{_qualname(found[source.name])} and {_qualname(source)}"
                    )
                found[source.name] = source

            self.pm.hook.ppauth_register_sources(register=register)
            self._sources = sorted(found.values(), key=lambda s: (s.priority, s.name))
        return list(self._sources)

    def resolvers(self) -> list[SecretResolver]:
        """Every registered secret resolver."""
        if self._resolvers is None:
            found: list[SecretResolver] = []

            def register(resolver: Any) -> None:
                if not isinstance(resolver, SecretResolver):
                    raise PluginRegistrationError(
                        f"{resolver!r} is not a secret resolver: it needs name, schemes, "
                        "claims(reference) and resolve(reference, request)"
                    )
                found.append(resolver)

            self.pm.hook.ppauth_register_secret_resolvers(register=register)
            self._resolvers = found
        return list(self._resolvers)

    def cache_backends(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        """Cache backend factories by name: ``file`` and ``memory`` are built in; each
        takes the options of a profile's cache table (``{}`` for a bare name)."""
        from requests_ppauth.cache.select import builtin_backends

        found: dict[str, Callable[[Mapping[str, Any]], Any]] = dict(builtin_backends())

        def register(name: Any, factory: Any) -> None:
            if not isinstance(name, str) or not callable(factory):
                raise PluginRegistrationError(
                    f"cache backend registration needs a name and a factory, got {name!r}"
                )
            if name in found:
                raise PluginRegistrationError(f"two plugins register a cache backend {name!r}")
            found[name] = factory

        self.pm.hook.ppauth_register_cache_backends(register=register)
        return found

    def command_adders(self) -> list[Callable[[SubParsers], None]]:
        """Callables plugins registered to add ``ppauth`` subcommands, in registration order.

        Each takes the ``ppauth`` argparse subparsers (see ``ppauth_register_commands``).
        """
        found: list[Callable[[SubParsers], None]] = []

        def register(add_commands: Any) -> None:
            if not callable(add_commands):
                raise PluginRegistrationError(
                    f"{add_commands!r} is not callable: ppauth_register_commands takes a "
                    "function of the argparse subparsers"
                )
            found.append(add_commands)

        self.pm.hook.ppauth_register_commands(register=register)
        return found

    def ordered_sources(self, order: Sequence[str] | None) -> list[CredentialSource]:
        """Sources in the order named (all of them by priority when ``order`` is None)."""
        sources = self.sources()
        if order is None:
            return sources
        by_name = {s.name: s for s in sources}
        unknown = [n for n in order if n not in by_name]
        if unknown:
            raise ConfigurationError(
                f"unknown credential source(s) {', '.join(map(repr, unknown))}; installed: "
                f"{', '.join(by_name) or 'none'}"
                + (
                    f" (blocked by {DISABLE_VAR}: {', '.join(sorted(self.blocked))})"
                    if self.blocked
                    else ""
                )
            )
        return [by_name[n] for n in order]

    def find_credential(
        self,
        profile: Profile,
        environ: Mapping[str, str],
        *,
        order: Sequence[str] | None = None,
        explicit_profile: bool = False,
    ) -> Credential:
        """Ask the sources in precedence order; the first credential wins.

        Precedence: ``order`` (the ``sources=`` argument), else the profile's
        ``sources`` list, else ascending priority. A source that raises stops the
        search: it recognised the request, so its error is the one to show.
        """
        # every source's frames hold them, and a source raises when its settings are
        # half set: views whose reprs show no value (PPAUTH_CLIENT_SECRET, client_secret)
        environ = EnvironView(environ)
        names = order if order is not None else profile.get("sources")
        reasons: dict[str, str] = {}
        resolvers = self.resolvers()
        for source in self.ordered_sources(names):
            request = SourceRequest(
                profile=profile.name,
                settings=SettingsView(profile.settings),
                environ=environ,
                config_path=profile.path,
                settings_mode=profile.file_mode,
                explicit_profile=explicit_profile,
                resolvers=resolvers,
            )
            try:
                credential = source.credential(request)
            except InvalidCredentialError as exc:  # Credential.__post_init__: say whose
                raise SourceError(source.name, str(exc)) from None
            if credential is not None:
                if not isinstance(credential, Credential):
                    raise PluginRegistrationError(
                        f"source {source.name!r} returned {type(credential).__name__}, "
                        "not a requests_ppauth.credentials.Credential"
                    )
                return _with_source(credential, source.name)
            reasons[source.name] = request.notes[-1] if request.notes else "passed"
        if explicit_profile and not profile.exists and profile.available:
            reasons["(config)"] = (
                f"profile {profile.name!r} is not in {profile.path}; it has: "
                f"{', '.join(profile.available)}"
            )
        raise NoCredentialError(profile.name, reasons)


def _qualname(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _with_source(credential: Credential, name: str) -> Credential:
    import dataclasses

    return dataclasses.replace(credential, source=name)


_plugins: Plugins | None = None
_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide plugin manager, created on first use."""
    global _plugins
    if _plugins is None:
        with _lock:
            if _plugins is None:
                _plugins = Plugins()
    return _plugins


def reset_plugins() -> None:
    """Forget the loaded plugins, so the next lookup reloads them (tests, long-lived hosts)."""
    global _plugins
    with _lock:
        _plugins = None
