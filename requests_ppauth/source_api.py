"""The public contract between the core and credential-source plugins.

A plugin author needs only this module, :mod:`requests_ppauth.credentials`,
:mod:`requests_ppauth.errors` and ``requests_ppauth.hookimpl``; the contract tests
in :mod:`requests_ppauth.testing.contract` check an implementation against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from requests_ppauth.credentials import Credential
from requests_ppauth.errors import SecretReferenceError
from requests_ppauth.sources._certfile import read_certificate as _read_certificate

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# What is taken for a reference even when no resolver claims it: a lower-case scheme of
# two characters or more, then a colon, and no whitespace anywhere. Entra ID's client
# secrets (40 characters of [A-Za-z0-9~._-]) never match, nor do Windows paths (C:\\...)
# nor most passwords (a capital first letter, a space), nor (reference_scheme) URLs
# that are not Key Vault ones; a literal that does match is written literal:<secret>.
_REFERENCE = re.compile(r"([a-z][a-z0-9+.-]+):\S*")
LITERAL_PREFIX = "literal:"
# Schemes we know plugins for: a string using one is a reference even when the plugin
# is missing, so the error says what to install instead of sending "keyring:x" as a secret.
WELL_KNOWN = {
    "keyring": "requests-ppauth-keyring",
    "https": "requests-ppauth-keyvault",
}
# What usually resolves the other schemes people write: named in the error for them.
SCHEME_HANDLERS = {
    "keyring": "the requests-ppauth-keyring plugin (pip install requests-ppauth-keyring)",
    "https": "the requests-ppauth-keyvault plugin for Azure Key Vault URLs "
    "(pip install requests-ppauth-keyvault)",
    "pass": "a GNU pass resolver plugin",
    "op": "a 1Password CLI resolver plugin",
    "vault": "a HashiCorp Vault resolver plugin",
    "bw": "a Bitwarden CLI resolver plugin",
    "sops": "a SOPS resolver plugin",
    "awssm": "an AWS Secrets Manager resolver plugin",
    "gcpsm": "a Google Secret Manager resolver plugin",
}


def reference_scheme(value: object) -> str | None:
    """The scheme when ``value`` has the shape of a secret reference (``pass:ppauth/prod``),
    else ``None``: what :meth:`SourceRequest.resolve` refuses to take literally."""
    if not isinstance(value, str):
        return None
    match = _REFERENCE.fullmatch(value)
    if not match:
        return None
    scheme = match.group(1)
    if scheme in ("http", "https") and ".vault." not in value:
        # a URL that is not a Key Vault one stays literal: the Key Vault plugin claims
        # its private-endpoint hosts per profile and leaves the others to be literals
        return None
    return scheme


def literal_form(value: object) -> bool:
    """Whether ``value`` is written as an explicit literal (``literal:...``): plaintext,
    although :meth:`SourceRequest.resolve` returns a different object for it (a source
    checking file modes must count it as plaintext)."""
    return isinstance(value, str) and value.startswith(LITERAL_PREFIX)


@runtime_checkable
class CredentialSource(Protocol):
    """Finds a credential for a profile.

    ``name``: unique, lower-case (``env``, ``file``, ``keyring``). ``priority``: lower
    is consulted first when nothing names an order.
    """

    name: str
    priority: int

    def credential(self, request: SourceRequest) -> Credential | None:
        """A credential, or ``None`` to pass (after ``request.note(why)``).

        Raise :class:`requests_ppauth.SourceError` when this source recognises the
        request (its settings are present) but cannot complete it.
        """
        ...


@runtime_checkable
class SecretResolver(Protocol):
    """Turns a secret reference into the secret."""

    name: str
    schemes: tuple[str, ...]

    def claims(self, reference: str) -> bool:
        """Whether ``reference`` is this resolver's to resolve."""
        ...

    def resolve(self, reference: str, request: SourceRequest) -> str | bytes:
        """The secret (``bytes`` for certificates); raise SecretReferenceError if missing."""
        ...


@runtime_checkable
class RequestAwareResolver(SecretResolver, Protocol):
    """A resolver whose claim can depend on the profile asking (optional extension).

    ``claims(reference)`` sees only the string, so a resolver cannot honour an
    allow-list kept in the profile (the Key Vault plugin's private-endpoint hosts in
    ``[profiles.<name>.keyvault] hosts``). When a resolver also has
    ``claims_for_request``, :meth:`SourceRequest.resolve` asks that instead; ``claims``
    must still answer for callers without a request.
    """

    def claims_for_request(self, reference: str, request: SourceRequest) -> bool:
        """Whether ``reference`` is this resolver's, given the request's settings and environ."""
        ...


@runtime_checkable
class SecretStore(Protocol):
    """A resolver that can also *keep* a secret, so ``ppauth profile add`` never has to
    write one into the config file (optional extension of :class:`SecretResolver`).

    ``store`` keeps ``secret`` (``key`` is ``client_secret``, ``certificate_password``
    or ``password``) and returns the reference to write instead, one the same resolver
    ``claims`` and resolves. ``ppauth profile remove`` also calls ``delete(reference)``
    when the store has it.
    """

    name: str

    def claims(self, reference: str) -> bool:
        """Whether ``reference`` is this store's."""
        ...

    def store(self, profile: str, key: str, secret: str) -> str:
        """Keep ``secret``; return the reference to write in the config file."""
        ...


@dataclass
class SourceRequest:
    """What a source is asked: which profile, its settings, the environment.

    ``settings`` is the profile's config-file table (empty if there is none);
    ``explicit_profile`` is true when the caller named the profile. ``note`` records
    why a source passed.
    """

    profile: str
    # both may hold plaintext secrets (a profile's client_secret, PPAUTH_CLIENT_SECRET)
    settings: Mapping[str, Any] = field(repr=False)
    environ: Mapping[str, str] = field(repr=False)
    config_path: Path | None = None
    settings_mode: int | None = None
    explicit_profile: bool = False
    resolvers: Sequence[SecretResolver] = ()
    notes: list[str] = field(default_factory=list)

    def note(self, reason: str) -> None:
        """Say why this source passed; shown in "no credential" errors and ``ppauth sources``."""
        self.notes.append(reason)

    def resolve(self, value: Any, what: str) -> Any:
        """``value`` itself, or the secret it references.

        - ``{ ref = "scheme:..." }`` (TOML) is a reference: the resolver that claims it
          resolves it, and an unclaimed one is a :class:`SecretReferenceError`;
        - a string a registered resolver claims is a reference too;
        - an unclaimed string of the shape ``scheme:rest`` (a lower-case scheme of two
          characters or more, no whitespace: ``pass:ppauth/prod``; an ``http(s)`` URL
          only when it is a Key Vault one) is a
          :class:`SecretReferenceError` naming the scheme and the plugin that usually
          handles it: sent to Entra ID as a secret it would only fail there;
        - ``literal:<secret>`` is ``<secret>`` as written (the way to write one that
          looks like a reference, in a config file or a variable alike);
        - any other string is the secret itself.
        """
        if isinstance(value, Mapping):
            if "ref" in value:
                return self._resolve(str(value["ref"]), what, explicit=True)
            return value
        if isinstance(value, str):
            if value.startswith(LITERAL_PREFIX):
                return value[len(LITERAL_PREFIX) :]
            if _SCHEME.match(value):
                return self._resolve(value, what, explicit=False)
        return value

    def _resolve(self, reference: str, what: str, *, explicit: bool) -> Any:
        for resolver in self.resolvers:
            if _claims(resolver, reference, self):
                return resolver.resolve(reference, self)
        match = _SCHEME.match(reference)
        scheme = match.group(1).lower() if match else ""
        shaped = reference_scheme(reference)
        if not explicit and shaped is None:
            return reference  # "Summer:2024", "C:\\x", "a b:c": a literal secret
        known = sorted({s for r in self.resolvers for s in r.schemes})
        handler = SCHEME_HANDLERS.get(scheme)
        if scheme == "https" and ".vault." not in reference:
            handler = None  # a URL, but not a Key Vault one: no plugin to name
        where = f"{what} of profile {self.profile!r}"
        installed = f"installed resolvers handle: {', '.join(known) or 'none'}"
        if scheme in WELL_KNOWN and handler:
            raise SecretReferenceError(
                f"{where} refers to a {scheme}: secret, but no installed plugin resolves "
                f"it ({installed}); nothing was sent: pip install {WELL_KNOWN[scheme]}"
            )
        usual = f" ({scheme}: references are usually resolved by {handler})" if handler else ""
        literal = (
            "" if explicit else f"; if it is the secret itself, put {LITERAL_PREFIX} before it"
        )
        raise SecretReferenceError(
            f"{where} is a reference with the unknown secret scheme {scheme or '(none)'!r}"
            f"{usual}; {installed}. Nothing was sent. If it is a reference, install the "
            f"plugin for {scheme or 'its scheme'} references (or unblock it in "
            f"PPAUTH_DISABLE_PLUGINS){literal}"
        )


def _claims(resolver: SecretResolver, reference: str, request: SourceRequest) -> bool:
    if isinstance(resolver, RequestAwareResolver):
        return resolver.claims_for_request(reference, request)
    return resolver.claims(reference)


SourceFactory = Callable[[], CredentialSource]


def read_certificate(source: str, path: str, setting: str) -> bytes:
    """The bytes of the PEM or PKCS#12 file at ``path``, for a ``ClientCertificate``.

    For sources whose profile names a ``certificate_path`` (the keyring source keeps
    the certificate's password in the keyring, the file on disk). Raises
    :class:`~requests_ppauth.SourceError` for ``source`` when the file is missing, a
    directory, unreadable or empty, naming ``setting`` (e.g. ``"certificate_path of
    [profiles.prod]"``) in the same words as the built-in sources, so users meet one
    vocabulary whichever source read the file.
    """
    return _read_certificate(source, path, setting)


# -- which source answered, and why -------------------------------------------------------

ANSWERED = "answered"
DECLINED = "declined"
FAILED = "failed"
SHADOWED = "shadowed"


@dataclass(frozen=True)
class SourceOutcome:
    """What one source said when asked for a profile's credential.

    ``outcome`` is ``"answered"`` (its credential is the one used), ``"declined"`` (it
    returned ``None``; ``reason`` is its last ``request.note``), ``"failed"`` (it raised;
    ``reason`` is the error's first line) or ``"shadowed"`` (it has a credential too, but
    a source asked before it answered or failed first). ``plugin`` is the plugin that
    registered it (the name ``PPAUTH_DISABLE_PLUGINS`` takes), ``distribution`` the
    package it comes from. ``credential`` says what the credential is (kind, client,
    tenant, user: never a secret), for the answered and shadowed ones.
    """

    name: str
    plugin: str
    distribution: str | None
    priority: int
    outcome: str
    reason: str
    credential: Mapping[str, Any] | None = None
    error: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SourceReport:
    """Every source asked for ``profile``, in the order asked, and which one answered.

    ``order`` says where the order came from: ``"argument"`` (``sources=``),
    ``"profile"`` (the profile's ``sources`` list) or ``"priority"`` (lowest number
    first). ``answered_by`` names the source whose credential a ``PowerPlatformAuth``
    uses, ``failed_by`` the one whose error it raises instead (at most one is set);
    ``"explicit"`` when the auth object was given a credential and asks no source.
    """

    profile: str
    order: str
    outcomes: tuple[SourceOutcome, ...]
    answered_by: str | None
    failed_by: str | None

    @property
    def answered(self) -> SourceOutcome | None:
        """The outcome of the source that answered, if one did."""
        return next((o for o in self.outcomes if o.outcome == ANSWERED), None)

    def outcome(self, name: str) -> SourceOutcome:
        """The outcome of the source called ``name`` (``KeyError`` if it was not asked)."""
        for o in self.outcomes:
            if o.name == name:
                return o
        raise KeyError(name)

    def __str__(self) -> str:
        head = {
            "argument": "in the order the sources= argument names",
            "profile": "in the order the profile's sources list names",
            "priority": "by priority, lowest number first",
        }.get(self.order, self.order)
        lines = [f"sources asked for profile {self.profile!r}, {head}:"]
        for o in self.outcomes:
            lines.append(f"  - {o.name} (plugin {o.plugin}, priority {o.priority}): {o.outcome}")
            if o.reason:
                lines[-1] += f": {o.reason}"
        if self.answered_by == "explicit":
            lines.append("  (none: the credential was given explicitly)")
        return "\n".join(lines)


def explain_sources(
    profile: str | None = None,
    *,
    sources: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SourceReport:
    """Ask every source for ``profile``'s credential, as ``PowerPlatformAuth(profile,
    sources=sources)`` would, and say what each one answered and why.

    Unlike a lookup it does not stop at the first answer or error: the sources after it
    are asked too, so a credential they hold shows as shadowed. Nothing is cached and no
    token is requested. ``profile`` defaults to ``PPAUTH_PROFILE``, else the config
    file's ``active_profile``, else ``default``;
    ``environ`` to ``os.environ``. ``ppauth sources`` prints the same report.
    """
    from requests_ppauth._redacted import EnvironView
    from requests_ppauth.config import choose_profile, load_profile
    from requests_ppauth.plugins import get_plugins

    env = EnvironView(environ)
    choice = choose_profile(profile, env)  # profile= > PPAUTH_PROFILE > active > default
    name, explicit = choice.name, choice.explicit
    return get_plugins().explain(
        load_profile(name, env), env, order=sources, explicit_profile=explicit
    )


def source_report(auth: Any) -> SourceReport:
    """:func:`explain_sources` for a ``PowerPlatformAuth``: its profile and ``sources=``.

    For tests and diagnostics: ``source_report(auth).answered_by == "jsonfile"``. An auth
    object given ``credential=`` asks no source: the report says ``"explicit"``.
    """
    if getattr(auth, "credential", None) is not None:
        from requests_ppauth.config import choose_profile

        name = choose_profile(getattr(auth, "profile", None)).name
        return SourceReport(name, "explicit", (), "explicit", None)
    return explain_sources(getattr(auth, "profile", None), sources=getattr(auth, "sources", None))
