"""The plugin manager: built-ins and entry points, loaded lazily, once, under control.

Nothing happens at import. The first credential lookup loads the built-in
sources and every ``requests_ppauth`` entry point except those named in
``PPAUTH_DISABLE_PLUGINS`` (comma-separated plugin names, built-ins included),
then checks that every hook implementation matches a spec. The name ``*`` blocks
every plugin that comes from an entry point, keeping the built-ins (what a test
suite of the core itself wants).

Every fault of a plugin is reported as a :class:`~requests_ppauth.errors.PluginError`
naming it (distribution and entry point), the hook or source, what it did wrong and
how to block it. What is fatal depends on who can fix it:

- a plugin installed through an entry point that cannot be imported, implements an
  unknown hook, or misbehaves in a registration hook (raises, returns a value instead
  of calling ``register``, registers a class or a source whose ``priority`` is not an
  int, takes a name already taken) is *skipped* with a :class:`PluginWarning`: one
  broken install must not stop every lookup, ``env`` included;
- the same faults of a plugin registered in-process (:meth:`Plugins.register`) or of a
  built-in raise: the code that registered it is right there to be fixed;
- a source whose ``credential()`` raises (anything but a ``PPAuthError``) or returns
  something other than a ``Credential`` stops the lookup with a ``PluginError``: going on
  to the next source would silently use another identity.
"""

from __future__ import annotations

import difflib
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import pluggy

from requests_ppauth import hookspecs
from requests_ppauth._redacted import EnvironView, SettingsView
from requests_ppauth.config import Profile
from requests_ppauth.credentials import Credential, SupportsGetToken, as_credential
from requests_ppauth.errors import (
    ConfigurationError,
    InvalidCredentialError,
    NoCredentialError,
    PluginError,
    PPAuthError,
    SourceError,
)
from requests_ppauth.source_api import (
    ANSWERED,
    DECLINED,
    FAILED,
    SHADOWED,
    CredentialSource,
    SecretResolver,
    SourceOutcome,
    SourceReport,
    SourceRequest,
)

if TYPE_CHECKING:
    from requests_ppauth.hookspecs import SubParsers

BUILTINS = (
    "requests_ppauth.sources.env",
    "requests_ppauth.sources.file",
    "requests_ppauth.sources.github",
    "requests_ppauth.sources.azure_pipelines",
    "requests_ppauth.sources.managed",
)
DISABLE_VAR = "PPAUTH_DISABLE_PLUGINS"


class PluginRegistrationError(PluginError, TypeError):
    """A plugin registered something that breaks the contract (bad type, duplicate name)."""


class PluginHookError(PluginError, pluggy.PluginValidationError):
    """A plugin's hook implementations do not match the specs (an unknown or misspelt
    hook, an argument the hook does not offer). Also a ``pluggy.PluginValidationError``,
    what pluggy itself raises for them."""

    def __init__(self, plugin: object, problem: str, *, name: str, hook: str) -> None:
        PluginError.__init__(self, problem, plugin=name, hook=hook)
        self.plugin = plugin  # pluggy's attribute: the plugin object


class PluginWarning(UserWarning):
    """A plugin was skipped (it cannot be imported, or broke a hook's contract); the
    message names it and how to block it."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin comes from, for messages: its name (what ``PPAUTH_DISABLE_PLUGINS``
    takes), its distribution, its entry point; ``strict`` when a fault raises rather
    than skips it (built-ins and plugins registered in-process)."""

    name: str
    distribution: str | None = None
    entry_point: str | None = None
    builtin: bool = False
    strict: bool = True

    def __str__(self) -> str:
        if self.builtin:
            return f"built-in plugin {self.name!r} ({self.entry_point})"
        if self.entry_point:
            return (
                f"plugin {self.name!r} (distribution {self.distribution}, entry point "
                f"{self.entry_point})"
            )
        return f"plugin {self.name!r} (registered in-process)"

    @property
    def hint(self) -> str:
        """How to go on without it, and whose fault it is."""
        if self.builtin:
            return (
                "this is a bug in requests-ppauth: please report it "
                f"({DISABLE_VAR}={self.name} blocks it meanwhile)"
            )
        return f"its author can fix it; to go on without it, set {DISABLE_VAR}={self.name}"


class _SkippedError(BaseException):
    """Internal: a plugin's contribution to one hook is dropped (already warned). A
    ``BaseException``, so a hook's own ``except Exception`` around ``register`` cannot
    swallow it."""


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
        self.infos: dict[str, PluginInfo] = {}
        self.skipped: dict[str, str] = {}  # plugin name -> why it was (partly) skipped
        self._owners: dict[str, PluginInfo] = {}  # source name -> the plugin that registered it
        import importlib

        for module_name in BUILTINS:
            short = module_name.rsplit(".", 1)[1]
            if short not in self.blocked:
                self.infos[short] = PluginInfo(
                    short, "requests-ppauth", f"module {module_name}", builtin=True
                )
                self.pm.register(importlib.import_module(module_name), name=short)
        self._load_entry_points()
        self.pm.check_pending()
        self._sources: list[CredentialSource] | None = None
        self._resolvers: list[SecretResolver] | None = None

    # -- loading ---------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        """Load every ``requests_ppauth`` entry point; one that fails is skipped, warned."""
        import importlib.metadata

        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != hookspecs.PROJECT:
                    continue
                if "*" in self.blocked:  # every plugin from an entry point; built-ins stay
                    self.pm.set_blocked(ep.name)
                    continue
                if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                    continue
                info = PluginInfo(
                    ep.name,
                    dist.metadata["name"] or "(unknown distribution)",
                    f"{ep.name} = {ep.value}",
                    strict=False,
                )
                try:
                    plugin = ep.load()
                except Exception as exc:  # a plugin's import must not break every lookup
                    self._skip(info, f"cannot be imported: {_exc_text(exc)}")
                    continue
                self.infos[ep.name] = info
                try:
                    self._register_checked(plugin, info)
                except PluginError as exc:
                    self.infos.pop(ep.name, None)
                    self._skip(info, exc.problem, already_named=True)

    def _register_checked(self, plugin: object, info: PluginInfo) -> None:
        """Register ``plugin`` under ``info.name``; raise :class:`PluginHookError` (with
        nothing left registered) when its hooks do not match the specs."""
        try:
            self.pm.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            found = re.search(r"for hook '(\w+)'", str(exc))
            hook = found.group(1) if found else ""
            detail = " ".join(str(exc).split())
            raise PluginHookError(
                plugin,
                f"{info} implements the hook {hook or '?'} with arguments the hook does not "
                f"offer (it offers: register): {detail}",
                name=info.name,
                hook=hook,
            ) from None
        unknown = [
            caller.name
            for caller in self.pm.get_hookcallers(plugin) or ()
            if not caller.has_spec()
            and any(not i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin)
        ]
        if unknown:
            self.pm.unregister(plugin)  # an unknown hook left behind fails every later check
            hook = unknown[0]
            close = difflib.get_close_matches(hook, _spec_names(), n=1, cutoff=0.6)
            guess = (
                f" (did you mean {close[0]!r}?)"
                if close
                else f"; the hooks are: {', '.join(_spec_names())}"
            )
            raise PluginHookError(
                plugin,
                f"{info} implements an unknown hook {hook!r}{guess}",
                name=info.name,
                hook=hook,
            )

    def _skip(self, info: PluginInfo, problem: str, *, already_named: bool = False) -> None:
        """Warn that ``info``'s plugin (or one hook of it) is skipped."""
        text = problem if already_named else f"{info} {problem}"
        self.skipped[info.name] = text
        warnings.warn(PluginWarning(f"{text}; it is skipped. Hint: {info.hint}"), stacklevel=3)

    def _fault(
        self, info: PluginInfo, problem: str, *, hook: str, source: str | None = None
    ) -> NoReturn:
        """A plugin broke a registration hook's contract: raise for a strict one, else
        warn and drop what it registered through that hook."""
        text = f"{info}, in its hook {hook}: {problem}"
        if info.strict:
            raise PluginRegistrationError(
                text, plugin=info.name, hook=hook, source=source, hint=info.hint
            )
        self._skip(info, text, already_named=True)
        raise _SkippedError

    def _info(self, plugin_name: str) -> PluginInfo:
        return self.infos.get(plugin_name) or PluginInfo(plugin_name)

    def _each_impl(
        self, hook: str, register_for: Callable[[PluginInfo, list[Any]], Callable[..., None]]
    ) -> Iterator[list[Any]]:
        """Call every implementation of ``hook`` in pluggy's order, each with its own
        ``register``; yield what each registered, unless it broke the contract."""
        caller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            info = self._info(impl.plugin_name)
            got: list[Any] = []
            try:
                if impl.hookwrapper or impl.wrapper:
                    self._fault(
                        info, "is a hook wrapper, which registration hooks do not take", hook=hook
                    )
                register = register_for(info, got)
                try:
                    result = impl.function(*[{"register": register}[a] for a in impl.argnames])
                except _SkippedError:
                    raise
                except PluginError:
                    raise
                except Exception as exc:
                    self._fault(info, f"raised {_exc_text(exc)}", hook=hook)
                if result is not None:
                    self._fault(
                        info,
                        f"returned a {type(result).__name__} instead of calling register(...) "
                        "for each thing it registers (the return value of a hook is "
                        "ignored, so it registered nothing)",
                        hook=hook,
                    )
            except _SkippedError:
                continue
            yield got

    # -- run-time registration ---------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object at run time (for apps and tests without entry points).

        Its faults raise (:class:`PluginHookError`, :class:`PluginRegistrationError`):
        the code registering it is the code to fix. A name in ``PPAUTH_DISABLE_PLUGINS``
        is not registered."""
        name = name or self.pm.get_canonical_name(plugin)
        if self.pm.is_blocked(name):
            return
        self._register_checked(plugin, PluginInfo(name))
        self.infos[name] = PluginInfo(name)
        self._sources = self._resolvers = None

    def unregister(self, name: str) -> None:
        """Remove a plugin registered by :meth:`register`."""
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._sources = self._resolvers = None

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins (built-ins and entry points)."""
        return sorted(n for n, p in self.pm.list_name_plugin() if p is not None)

    def plugin_of(self, source: str) -> PluginInfo:
        """The plugin that registered the source called ``source``."""
        self.sources()
        return self._owners.get(source) or PluginInfo("(unknown)")

    # -- registration hooks -------------------------------------------------------------

    def sources(self) -> list[CredentialSource]:
        """Every registered source, by ascending ``priority`` then name."""
        if self._sources is None:
            found: dict[str, CredentialSource] = {}
            owners: dict[str, PluginInfo] = {}
            hook = "ppauth_register_sources"

            def register_for(info: PluginInfo, got: list[Any]) -> Callable[..., None]:
                def register(source: Any) -> None:
                    problem = _source_problem(source)
                    if problem:
                        self._fault(info, problem, hook=hook, source=getattr(source, "name", None))
                    if source.name in found or any(s.name == source.name for s in got):
                        other = found.get(source.name) or next(
                            s for s in got if s.name == source.name
                        )
                        owner = owners.get(source.name, info)
                        self._fault(
                            info,
                            f"two plugins register a source named {source.name!r}: "
                            f"{_qualname(other)} (plugin {owner.name}) and {_qualname(source)} "
                            f"(plugin {info.name})",
                            hook=hook,
                            source=source.name,
                        )
                    got.append(source)

                return register

            for impl_info, got in self._collect(hook, register_for):
                for source in got:
                    found[source.name] = source
                    owners[source.name] = impl_info
            self._owners = owners
            self._sources = sorted(found.values(), key=lambda s: (s.priority, s.name))
        return list(self._sources)

    def _collect(
        self, hook: str, register_for: Callable[[PluginInfo, list[Any]], Callable[..., None]]
    ) -> Iterator[tuple[PluginInfo, list[Any]]]:
        """Like :meth:`_each_impl`, with the plugin each registration came from."""
        current: list[PluginInfo] = []

        def wrapped(info: PluginInfo, got: list[Any]) -> Callable[..., None]:
            current[:] = [info]
            return register_for(info, got)

        for got in self._each_impl(hook, wrapped):
            yield current[0], got

    def resolvers(self) -> list[SecretResolver]:
        """Every registered secret resolver."""
        if self._resolvers is None:
            found: list[SecretResolver] = []
            hook = "ppauth_register_secret_resolvers"

            def register_for(info: PluginInfo, got: list[Any]) -> Callable[..., None]:
                def register(resolver: Any) -> None:
                    if isinstance(resolver, type):
                        self._fault(
                            info,
                            f"registered the class {resolver.__qualname__}, not an instance: "
                            f"call register({resolver.__qualname__}())",
                            hook=hook,
                        )
                    if not isinstance(resolver, SecretResolver):
                        missing = _missing(resolver, ("name", "schemes", "claims", "resolve"))
                        self._fault(
                            info,
                            f"{_short_repr(resolver)} is not a secret resolver: it needs name, "
                            f"schemes, claims(reference) and resolve(reference, request) "
                            f"(missing: {', '.join(missing) or 'none'})",
                            hook=hook,
                        )
                    got.append(resolver)

                return register

            for got in self._each_impl(hook, register_for):
                found.extend(got)
            self._resolvers = found
        return list(self._resolvers)

    def cache_backends(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        """Cache backend factories by name: ``file`` and ``memory`` are built in; each
        takes the options of a profile's cache table (``{}`` for a bare name)."""
        from requests_ppauth.cache.select import builtin_backends

        found: dict[str, Callable[[Mapping[str, Any]], Any]] = dict(builtin_backends())
        hook = "ppauth_register_cache_backends"

        def register_for(info: PluginInfo, got: list[Any]) -> Callable[..., None]:
            def register(name: Any, factory: Any) -> None:
                if not isinstance(name, str) or not callable(factory):
                    self._fault(
                        info,
                        "cache backend registration needs a name and a factory, got "
                        f"{_short_repr(name)} and {_short_repr(factory)}",
                        hook=hook,
                    )
                if name in found or any(n == name for n, _ in got):
                    self._fault(info, f"two plugins register a cache backend {name!r}", hook=hook)
                got.append((name, factory))

            return register

        for got in self._each_impl(hook, register_for):
            found.update(got)
        return found

    def command_adders(self) -> list[Callable[[SubParsers], None]]:
        """Callables plugins registered to add ``ppauth`` subcommands, in registration order.

        Each takes the ``ppauth`` argparse subparsers (see ``ppauth_register_commands``).
        """
        found: list[Callable[[SubParsers], None]] = []
        hook = "ppauth_register_commands"

        def register_for(info: PluginInfo, got: list[Any]) -> Callable[..., None]:
            def register(add_commands: Any) -> None:
                if not callable(add_commands):
                    self._fault(
                        info,
                        f"{_short_repr(add_commands)} is not callable: ppauth_register_commands "
                        "takes a function of the argparse subparsers",
                        hook=hook,
                    )
                got.append(add_commands)

            return register

        for got in self._each_impl(hook, register_for):
            found.extend(got)
        return found

    # -- lookups ------------------------------------------------------------------------

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
                + (f" (skipped: {'; '.join(self.skipped.values())})" if self.skipped else "")
            )
        return [by_name[n] for n in order]

    def ask(self, source: CredentialSource, request: SourceRequest) -> Credential | None:
        """``source.credential(request)``, its faults reported as the plugin's.

        A ``PPAuthError`` it raises is its own message and passes through; a malformed
        credential becomes a ``SourceError`` naming it; anything else (a crash, a value
        that is not a ``Credential``) is a :class:`PluginError` naming the source and
        its plugin.
        """
        try:
            credential = source.credential(request)
        except InvalidCredentialError as exc:  # Credential.__post_init__: say whose
            raise SourceError(source.name, str(exc)) from None
        except PPAuthError:
            raise
        except Exception as exc:
            info = self.plugin_of(source.name)
            raise PluginError(
                f"source {source.name!r} of {info} raised {_exc_text(exc)} in credential()",
                plugin=info.name,
                source=source.name,
                hint=info.hint,
            ) from exc
        if isinstance(credential, SupportsGetToken) and not isinstance(credential, Credential):
            # an azure-core TokenCredential: the provider asks it instead of msal
            return as_credential(credential)
        if credential is not None and not isinstance(credential, Credential):
            info = self.plugin_of(source.name)
            raise PluginRegistrationError(
                f"source {source.name!r} of {info} returned {type(credential).__name__}, "
                "not a requests_ppauth.credentials.Credential, an azure-core "
                "TokenCredential, or None to decline",
                plugin=info.name,
                source=source.name,
                hint=info.hint,
            )
        return credential

    def _request(
        self,
        profile: Profile,
        environ: Mapping[str, str],
        explicit_profile: bool,
        resolvers: Sequence[SecretResolver],
    ) -> SourceRequest:
        return SourceRequest(
            profile=profile.name,
            settings=SettingsView(profile.settings),
            environ=environ,
            config_path=profile.path,
            settings_mode=profile.file_mode,
            explicit_profile=explicit_profile,
            resolvers=resolvers,
        )

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
            request = self._request(profile, environ, explicit_profile, resolvers)
            credential = self.ask(source, request)
            if credential is not None:
                return _with_source(credential, source.name)
            reasons[source.name] = request.notes[-1] if request.notes else "passed"
        if explicit_profile and not profile.exists and profile.available:
            reasons["(config)"] = (
                f"profile {profile.name!r} is not in {profile.path}; it has: "
                f"{', '.join(profile.available)}"
            )
        raise NoCredentialError(profile.name, reasons)

    def explain(
        self,
        profile: Profile,
        environ: Mapping[str, str],
        *,
        order: Sequence[str] | None = None,
        explicit_profile: bool = False,
    ) -> SourceReport:
        """Ask every source, in :meth:`find_credential`'s order, and say what each said
        (see :func:`requests_ppauth.source_api.explain_sources`)."""
        environ = EnvironView(environ)
        names = order if order is not None else profile.get("sources")
        where = "argument" if order is not None else "profile" if names is not None else "priority"
        resolvers = self.resolvers()
        outcomes: list[SourceOutcome] = []
        answered: str | None = None
        failed: str | None = None
        for source in self.ordered_sources(names):
            request = self._request(profile, environ, explicit_profile, resolvers)
            info = self.plugin_of(source.name)
            decided = answered is not None or failed is not None
            summary: Mapping[str, Any] | None = None
            error: BaseException | None = None
            try:
                credential = self.ask(source, request)
            except PPAuthError as exc:
                outcome, error = FAILED, exc
                text = exc.problem if isinstance(exc, PluginError) else str(exc)
                reason = (text.splitlines() or [type(exc).__name__])[0]
                if not decided:
                    failed = source.name
            else:
                if credential is None:
                    outcome = DECLINED
                    reason = request.notes[-1] if request.notes else "declined (gave no reason)"
                else:
                    outcome = SHADOWED if decided else ANSWERED
                    summary = _summary(credential)
                    reason = ""
                    if not decided:
                        answered = source.name
            outcomes.append(
                SourceOutcome(
                    name=source.name,
                    plugin=info.name,
                    distribution=info.distribution,
                    priority=source.priority,
                    outcome=outcome,
                    reason=reason,
                    credential=summary,
                    error=error,
                )
            )
        return SourceReport(profile.name, where, tuple(outcomes), answered, failed)


def _summary(credential: Credential) -> dict[str, Any]:
    """What a credential may show: never its secret."""
    from requests_ppauth.credentials import ManagedIdentity

    summary: dict[str, Any] = {
        "kind": credential.kind,
        "client_id": credential.client_id,
        "tenant_id": credential.tenant_id,
        "user": credential.user,
        "authority_host": credential.authority_host,
    }
    if isinstance(credential, ManagedIdentity):  # which identity: its client id may be empty
        summary["identity"] = (
            credential.client_id
            or (f"object_id:{credential.object_id}" if credential.object_id else None)
            or credential.resource_id
            or "system"
        )
    return summary


def _spec_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("ppauth_"))


def _exc_text(exc: BaseException) -> str:
    """``Type: first line`` of an exception, at most 200 characters of its message."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def _short_repr(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _missing(obj: object, names: Sequence[str]) -> list[str]:
    return [n for n in names if not hasattr(obj, n)]


def _source_problem(source: Any) -> str | None:
    """Why ``source`` cannot be a credential source, or ``None``."""
    if isinstance(source, type):
        return (
            f"registered the class {source.__qualname__}, not an instance: call "
            f"register({source.__qualname__}())"
        )
    if not isinstance(source, CredentialSource):
        missing = _missing(source, ("name", "priority", "credential"))
        return (
            f"{_short_repr(source)} is not a credential source: it needs name, priority and "
            f"credential(request) (missing: {', '.join(missing) or 'none'})"
        )
    if not isinstance(source.name, str) or not source.name:
        return (
            f"the source {_qualname(source)} has the name {source.name!r}: it must be a "
            "non-empty str"
        )
    priority = source.priority
    if isinstance(priority, bool) or not isinstance(priority, int):
        return (
            f"source {source.name!r} has priority {priority!r}, a {type(priority).__name__}: "
            "it must be an int (lower is asked first; env is 10, file 20)"
        )
    if not callable(getattr(source, "credential", None)):
        return f"source {source.name!r} has a credential attribute that is not a method"
    return None


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
