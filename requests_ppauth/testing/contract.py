"""Contract tests that every credential-source and secret-resolver plugin should pass.

A plugin's whole test file can be a subclass (the pattern of keyring's
``BackendBasicTests``)::

    from requests_ppauth.testing.contract import SourceContract

    class TestMySource(SourceContract):
        plugin = my_plugin_module            # registers the source through the hook

        @pytest.fixture
        def source(self):
            return MySource()

        def provision(self, profile):        # store a credential the source will find
            ...
            return ExpectedCredential(kind="secret", tenant_id=..., client_id=...,
                                      secrets=("the-secret",))

        def provision_unavailable(self, profile):   # optional, reported as a skip if absent
            self.provision(profile)
            ...                              # then: binary missing, cannot decrypt, agent hung

Override :meth:`SourceContract.provision_broken` to prove that "mine but broken"
raises :class:`~requests_ppauth.SourceError`, and subclass :class:`ResolverContract`
for a secret resolver. The tests use only the public plugin API.

Every failure says what was expected and what came back: this module is installed,
not collected, so pytest does not rewrite its ``assert`` statements, and each one
carries its own message (``tests/test_contracts_catch_mistakes.py`` checks that).
A source is also run with decoy values in ``os.environ`` (it must read
``request.environ``), and a resolver is shown other plugins' references and
plausible plaintext secrets besides the author's :meth:`~ResolverContract.foreign_references`.
"""

from __future__ import annotations

import dataclasses
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import pytest

from requests_ppauth import hookspecs
from requests_ppauth.credentials import Credential
from requests_ppauth.errors import SecretReferenceError, SourceError
from requests_ppauth.source_api import (
    CredentialSource,
    RequestAwareResolver,
    SecretResolver,
    SourceRequest,
)

__all__ = [
    "FOREIGN_REFERENCES",
    "ExpectedCredential",
    "ResolverContract",
    "SourceContract",
    "make_request",
]


@dataclass(frozen=True)
class ExpectedCredential:
    """What :meth:`SourceContract.provision` promises the source will return."""

    kind: str
    tenant_id: str
    client_id: str
    secrets: tuple[str, ...] = ()


def make_request(
    profile: str,
    settings: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    resolvers: tuple[SecretResolver, ...] = (),
) -> SourceRequest:
    """A :class:`SourceRequest` as the core builds one."""
    return SourceRequest(
        profile=profile,
        settings=settings or {},
        environ=environ or {},
        config_path=Path("/nonexistent/requests-ppauth-contract.toml"),
        settings_mode=0o600,
        explicit_profile=True,
        resolvers=resolvers,
    )


def _registered(plugin: ModuleType | object, hook: str) -> list[Any]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name="plugin-under-test")
    try:
        pm.check_pending()  # a misspelt hook name fails here
    except pluggy.PluginValidationError as exc:
        pytest.fail(
            f"the plugin's hooks: expected only names from requests_ppauth.hookspecs, got {exc}"
        )
    found: list[Any] = []
    returned = getattr(pm.hook, hook)(
        register=lambda *args: found.append(args[-1] if len(args) == 1 else args)
    )
    assert not [r for r in returned if r is not None], (
        f"{hook}: expected the hook to call register(...) and return None, got it returning "
        f"{returned!r} (a returned value is ignored: nothing is registered that way)"
    )
    return found


def _show(value: object, secrets: Iterable[str] = ()) -> str:
    """``value`` for a failure message: a credential by kind and ids only, any known
    secret masked (a failure message must not leak what the contract is guarding)."""
    if isinstance(value, Credential):
        text = (
            f"{type(value).__name__}(kind={value.kind!r}, tenant_id={value.tenant_id!r}, "
            f"client_id={value.client_id!r})"
        )
    elif isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
    else:
        text = repr(value)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _bounded(call: Callable[[], Any], timeout: float) -> tuple[str, Any]:
    """``("returned", value)``, ``("raised", exc)`` or ``("hung", None)``: ``call()`` in a
    daemon thread, given ``timeout`` seconds (a hung call is left behind, not joined)."""
    box: list[tuple[str, Any]] = []

    def run() -> None:
        try:
            box.append(("returned", call()))
        except BaseException as exc:  # reported by the caller
            box.append(("raised", exc))

    thread = threading.Thread(target=run, name="source-contract", daemon=True)
    thread.start()
    thread.join(timeout)
    return box[0] if box else ("hung", None)


UNAVAILABLE_HINT = (
    "not checked: how this source behaves when its store is unavailable (binary missing, "
    "cannot decrypt, agent hung). Override provision_unavailable(profile) in the test class: "
    "store a credential for the profile, then make the store unavailable (a failing binary "
    "first on PATH, a corrupt or undecryptable file, a stopped or hung agent) and return the "
    "ExpectedCredential whose secrets must not leak. The case then asserts that the source "
    "declines (request.note + None) or raises SourceError naming itself within "
    "unavailable_timeout seconds"
)


class SourceContract:
    """Subclass, provide the ``source`` fixture and :meth:`provision`."""

    plugin: ModuleType | object | None = None
    #: seconds an unavailable store may take before the source must have given up
    unavailable_timeout: float = 30.0
    #: variables that get a decoy value in ``os.environ`` (with those of the request's
    #: ``environ``) while the source runs: it must read ``request.environ``
    decoy_variables: tuple[str, ...] = (
        "PPAUTH_TENANT_ID",
        "PPAUTH_CLIENT_ID",
        "PPAUTH_CLIENT_SECRET",
        "PPAUTH_PROFILE",
    )
    #: variables never given a decoy (the test process itself needs them)
    never_decoyed: tuple[str, ...] = ("PATH", "PYTHONPATH", "PYTEST_CURRENT_TEST")

    @pytest.fixture
    def source(self) -> CredentialSource:
        raise NotImplementedError("provide a `source` fixture returning the source")

    def provision(self, profile: str) -> ExpectedCredential:
        """Store a credential for ``profile`` where the source looks; describe it."""
        raise NotImplementedError("override provision(profile) to store a credential")

    def provision_broken(self, profile: str) -> None:
        """Store something the source recognises but cannot use. Skip if not overridden."""
        pytest.skip("this source has no 'recognised but broken' state to provision")

    def provision_unavailable(self, profile: str) -> ExpectedCredential | None:
        """Store a credential for ``profile``, then make the store unavailable (binary
        missing, cannot decrypt, agent hung); return what was stored, whose secrets must
        not leak. Reported as a skip saying how to provide it if not overridden."""
        pytest.skip(UNAVAILABLE_HINT)

    def request_for(self, profile: str) -> SourceRequest:
        """The request the core would make for ``profile`` (override to add settings)."""
        return make_request(profile)

    # -- the contract -----------------------------------------------------------------
    def test_satisfies_the_protocol(self, source: CredentialSource) -> None:
        missing = [a for a in ("name", "priority", "credential") if not hasattr(source, a)]
        assert not missing, (
            f"a CredentialSource (name, priority, credential(request)): expected all three, "
            f"got {type(source).__name__} without {', '.join(missing)}"
        )
        assert callable(source.credential), (
            f"credential: expected a method credential(request), got {source.credential!r}"
        )
        assert isinstance(source, CredentialSource), (
            f"expected a CredentialSource, got {type(source).__name__}"
        )
        name = source.name
        if not (isinstance(name, str) and name and name == name.lower()):
            pytest.fail(f"name: expected a non-empty lower-case str, got {name!r}")
        priority = source.priority
        if not isinstance(priority, int) or isinstance(priority, bool):
            pytest.fail(
                f"priority: expected an int (lower is asked first), got {priority!r} "
                f"({type(priority).__name__})"
            )

    def test_unknown_profile_passes_with_a_reason(self, source: CredentialSource) -> None:
        request = self.request_for(f"no-such-profile-{uuid.uuid4().hex[:8]}")
        got = source.credential(request)
        assert got is None, (
            f"credential() for a profile nothing was stored for: expected None, got {_show(got)}"
        )
        assert request.notes, (
            "credential() returning None: expected request.note(reason) first (the reason "
            "shows in 'no credential' errors and `ppauth sources`), got no note"
        )
        bad = [n for n in request.notes if not (isinstance(n, str) and n.strip())]
        assert not bad, f"request.note(reason): expected non-empty strings, got {bad!r}"

    def _found(self, source: CredentialSource, profile: str, expected: ExpectedCredential) -> Any:
        credential = source.credential(self.request_for(profile))
        assert isinstance(credential, Credential), (
            f"credential() for a provisioned profile: expected a Credential, got "
            f"{_show(credential, expected.secrets)}"
        )
        got = (credential.kind, credential.tenant_id, credential.client_id)
        want = (expected.kind, expected.tenant_id, expected.client_id)
        assert got == want, (
            f"the credential found (kind, tenant_id, client_id): expected {want}, got {got}"
        )
        return credential

    def test_finds_a_provisioned_credential(self, source: CredentialSource) -> None:
        profile = f"contract-{uuid.uuid4().hex[:8]}"
        self._found(source, profile, self.provision(profile))

    def test_secrets_never_show_in_repr(self, source: CredentialSource) -> None:
        profile = f"contract-{uuid.uuid4().hex[:8]}"
        expected = self.provision(profile)
        credential = source.credential(self.request_for(profile))
        for what, shown in (
            ("repr(credential)", repr(credential)),
            ("str(credential)", str(credential)),
            ("repr(source)", repr(source)),
        ):
            leaked = [i for i, s in enumerate(expected.secrets) if s and s in shown]
            assert not leaked, (
                f"{what}: expected no secret, got provisioned secret #{leaked[0]} in it "
                f"({_show(shown, expected.secrets)})"
            )

    def test_recognised_but_broken_raises_source_error(self, source: CredentialSource) -> None:
        profile = f"broken-{uuid.uuid4().hex[:8]}"
        self.provision_broken(profile)
        try:
            got = source.credential(self.request_for(profile))
        except SourceError as exc:
            raised = exc.source
        except Exception as exc:
            pytest.fail(
                f"credential() for a recognised but broken profile: expected SourceError("
                f"{source.name!r}, ...), got {_show(exc)}"
            )
        else:
            pytest.fail(
                f"credential() for a recognised but broken profile: expected SourceError("
                f"{source.name!r}, ...), got {_show(got)} (a pass would hide the user's mistake)"
            )
        assert raised == source.name, (
            f"SourceError for a recognised but broken profile: expected source "
            f"{source.name!r}, got {raised!r}"
        )

    def test_an_unavailable_store_declines_or_raises_in_time(
        self, source: CredentialSource
    ) -> None:
        """Binary missing, cannot decrypt, agent hung: the user gets an answer, soon."""
        profile = f"unavailable-{uuid.uuid4().hex[:8]}"
        stored = self.provision_unavailable(profile)
        secrets = stored.secrets if stored is not None else ()
        request = self.request_for(profile)
        limit = self.unavailable_timeout
        started = time.monotonic()
        how, value = _bounded(lambda: source.credential(request), limit)
        took = time.monotonic() - started
        expected = (
            f"expected None (after request.note) or SourceError({source.name!r}, ...) within "
            f"{limit:g} s"
        )
        if how == "hung":
            pytest.fail(
                f"credential() with the store unavailable: {expected}, got no answer after "
                f"{took:.1f} s (bound every wait on the store: a subprocess or socket timeout)"
            )
        if how == "raised":
            if not isinstance(value, SourceError):
                pytest.fail(
                    f"credential() with the store unavailable: {expected}, got "
                    f"{_show(value, secrets)}"
                )
            assert value.source == source.name, (
                f"SourceError with the store unavailable: expected source {source.name!r}, "
                f"got {value.source!r}"
            )
            message = str(value)
            assert message.strip(), "SourceError with the store unavailable: got no message"
            leaked = [i for i, s in enumerate(secrets) if s and s in message]
            assert not leaked, (
                f"SourceError with the store unavailable: expected no secret in the message, "
                f"got secret #{leaked[0]}: {_show(message, secrets)}"
            )
            return
        assert value is None, (
            f"credential() with the store unavailable: {expected}, got {_show(value, secrets)}"
        )
        assert request.notes, (
            "credential() with the store unavailable returned None: expected request.note"
            "(why) first (a silent pass hides that the store is down), got no note"
        )
        noted = " ".join(str(n) for n in request.notes)
        leaked = [i for i, s in enumerate(secrets) if s and s in noted]
        assert not leaked, (
            f"notes with the store unavailable: expected no secret, got secret #{leaked[0]}: "
            f"{_show(noted, secrets)}"
        )

    def test_reads_request_environ_not_os_environ(
        self, source: CredentialSource, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The core hands each source the environment to use (a test's, a worker's, a
        CLI's ``--env``); a source that reads ``os.environ`` ignores it."""
        profile = f"environ-{uuid.uuid4().hex[:8]}"
        expected = self.provision(profile)
        real = dict(self.request_for(profile).environ)
        names = sorted((set(real) | set(self.decoy_variables)) - set(self.never_decoyed))

        def outcome() -> tuple[Any, ...]:
            return _outcome(source, self.request_for(profile))

        def emptied() -> tuple[Any, ...]:
            request = dataclasses.replace(self.request_for(profile), environ={}, notes=[])
            return _outcome(source, request)

        for name in names:
            monkeypatch.delenv(name, raising=False)
        self._found(source, profile, expected)  # with nothing for it in os.environ
        baseline = outcome()
        for name in names:
            monkeypatch.setenv(name, f"decoy-{name.lower()}-not-this-one")
        decoyed = outcome()
        assert decoyed == baseline, (
            f"credential() with decoy values in os.environ for {', '.join(names)}: expected "
            f"the answer from request.environ, {_describe(baseline, expected.secrets)}, got "
            f"{_describe(decoyed, expected.secrets)} (read request.environ, not os.environ)"
        )
        for name in names:
            monkeypatch.delenv(name, raising=False)
        neither = emptied()
        for name, value in real.items():
            if name not in self.never_decoyed:
                monkeypatch.setenv(name, value)
        moved = emptied()
        assert moved == neither, (
            f"credential() with request.environ empty and its values ({', '.join(real)}) in "
            f"os.environ: expected the same answer as with them in neither, "
            f"{_describe(neither, expected.secrets)}, got {_describe(moved, expected.secrets)} "
            f"(the source falls back to os.environ)"
        )

    def test_concurrent_lookups_agree(self, source: CredentialSource) -> None:
        profile = f"contract-{uuid.uuid4().hex[:8]}"
        expected = self.provision(profile)
        results: list[Any] = []

        def look() -> None:
            try:
                results.append(source.credential(self.request_for(profile)))
            except Exception as exc:  # reported by the assertion below
                results.append(exc)

        threads = [threading.Thread(target=look) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 8, (
            f"8 threads looking up at once: expected 8 answers within 30 s, got {len(results)}"
        )
        wrong = [
            r
            for r in results
            if not (isinstance(r, Credential) and r.client_id == expected.client_id)
        ]
        assert not wrong, (
            f"8 threads looking up at once: expected 8 credentials for client "
            f"{expected.client_id!r}, got {len(wrong)} others, e.g. "
            f"{_show(wrong[0], expected.secrets)}"
        )

    def test_credentials_pickle(self, source: CredentialSource) -> None:
        """Auth objects travel to worker processes with their credential."""
        profile = f"contract-{uuid.uuid4().hex[:8]}"
        expected = self.provision(profile)
        credential = source.credential(self.request_for(profile))
        try:
            copy = pickle.loads(pickle.dumps(credential))  # noqa: S301 - our own bytes
        except Exception as exc:
            pytest.fail(f"pickling the credential: expected a copy, got {_show(exc)}")
        assert copy == credential, (
            f"a pickled copy of the credential: expected it equal to "
            f"{_show(credential, expected.secrets)}, got {_show(copy, expected.secrets)}"
        )

    def test_registers_through_the_hook(self, source: CredentialSource) -> None:
        if self.plugin is None:
            pytest.skip("set `plugin` to the module the entry point names")
        found = _registered(self.plugin, "ppauth_register_sources")
        types = [type(s) for s in found]
        assert types == [type(source)], (
            f"ppauth_register_sources: expected register() called with one "
            f"{type(source).__name__} instance, got {[t.__name__ for t in types]}"
        )
        assert found[0].name == source.name, (
            f"the registered source's name: expected {source.name!r}, got {found[0].name!r}"
        )


def _outcome(source: CredentialSource, request: SourceRequest) -> tuple[Any, ...]:
    """What ``credential(request)`` came to, comparable: a credential, a pass or an error."""
    try:
        got = source.credential(request)
    except SourceError as exc:
        return ("SourceError", exc.source)
    except Exception as exc:
        return ("raised", type(exc).__name__)
    return ("credential", got) if got is not None else ("passed",)


def _describe(outcome: tuple[Any, ...], secrets: Iterable[str]) -> str:
    if outcome[0] == "credential":
        return _show(outcome[1], secrets)
    if outcome[0] == "passed":
        return "None (a pass)"
    return f"{outcome[0]} ({outcome[1]})"


# References no resolver but their own plugin's may claim, and plaintext that no
# resolver may claim at all: (the scheme that owns it or None, reference, what it is).
# A resolver whose schemes include the owning scheme is not shown that reference.
FOREIGN_REFERENCES: tuple[tuple[str | None, str, str], ...] = (
    ("keyring", "keyring:x", "a keyring plugin reference"),
    ("keyring", "keyring:corp-vault/prod:client_secret", "a keyring reference with a service"),
    ("https", "https://myvault.vault.azure.net/secrets/name", "an Azure Key Vault secret URL"),
    ("pass", "pass:x", "a GNU pass reference"),
    ("pass", "pass:ppauth/prod", "a GNU pass reference with a path"),
    ("op", "op://vault/item/field", "a 1Password reference"),
    ("env", "env:X", "an environment-variable reference"),
    ("file", "file:/x", "a file reference"),
    (None, "Abc8Q~xyz.-_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tUvW", "an Entra ID client secret"),
    (None, "7f3c2a1e-9b4d-4e8a-b6c5-0d1e2f3a4b5c", "a GUID"),
    (None, "c2VjcmV0LXZhbHVlLXRoYXQtaXMtYmFzZTY0Lw==", "a base64 blob"),
    (None, "https://www.example.com/index.html", "a URL to a host that keeps no secrets"),
    (None, "correct horse battery staple", "a passphrase"),
    (None, "pa:ss", "a password with a colon"),
)


class ResolverContract:
    """Subclass, provide the ``resolver`` fixture and the three methods below."""

    plugin: ModuleType | object | None = None

    @pytest.fixture
    def resolver(self) -> SecretResolver:
        raise NotImplementedError("provide a `resolver` fixture")

    def provision_secret(self, value: str) -> str:
        """Store ``value``; return the reference that names it."""
        raise NotImplementedError("override provision_secret(value)")

    def missing_reference(self) -> str:
        """A well-formed reference to a secret that does not exist."""
        raise NotImplementedError("override missing_reference()")

    def foreign_references(self) -> list[str]:
        """References that are not this resolver's (besides :data:`FOREIGN_REFERENCES`,
        which are always checked)."""
        return ["nosuchscheme:abc", "plain-secret-value", "pa:ss"]

    def test_satisfies_the_protocol(self, resolver: SecretResolver) -> None:
        missing = [a for a in ("name", "schemes", "claims", "resolve") if not hasattr(resolver, a)]
        assert not missing, (
            f"a SecretResolver (name, schemes, claims, resolve): expected all four, got "
            f"{type(resolver).__name__} without {', '.join(missing)}"
        )
        assert isinstance(resolver, SecretResolver), (
            f"expected a SecretResolver, got {type(resolver).__name__}"
        )
        schemes = resolver.schemes
        if not (isinstance(schemes, tuple) and schemes):
            pytest.fail(
                f"schemes: expected a non-empty tuple of lower-case schemes, got {schemes!r}"
            )
        bad = [s for s in schemes if not (isinstance(s, str) and s and s == s.lower())]
        assert not bad, f"schemes: expected lower-case, non-empty strings, got {bad!r}"

    def test_resolves_what_it_claims(self, resolver: SecretResolver) -> None:
        value = f"s3cr3t-{uuid.uuid4().hex}"
        reference = self.provision_secret(value)
        assert resolver.claims(reference), (
            f"claims({reference!r}) for a reference provision_secret returned: expected True, "
            f"got False"
        )
        resolved = resolver.resolve(reference, make_request("default", resolvers=(resolver,)))
        text = resolved.decode() if isinstance(resolved, bytes) else resolved
        assert text == value, (
            f"resolve({reference!r}): expected the stored value, got a different "
            f"{type(resolved).__name__} (not shown: it may be another secret)"
        )

    def _claimed(self, resolver: SecretResolver, reference: str) -> list[str]:
        """The ways ``resolver`` claims ``reference`` (``claims``, ``claims_for_request``)."""
        found: list[str] = []
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("claims", lambda: resolver.claims(reference))
        ]
        if isinstance(resolver, RequestAwareResolver):
            request = make_request("default", resolvers=(resolver,))
            calls.append(
                ("claims_for_request", lambda: resolver.claims_for_request(reference, request))
            )
        for name, call in calls:
            try:
                if call():
                    found.append(name)
            except Exception as exc:
                pytest.fail(
                    f"{name}({reference!r}): expected True or False, got {_show(exc)} "
                    f"(claims must answer for any string)"
                )
        return found

    def test_does_not_claim_others(self, resolver: SecretResolver) -> None:
        claimed = {r: c for r in self.foreign_references() if (c := self._claimed(resolver, r))}
        assert not claimed, (
            f"{type(resolver).__name__} (schemes {resolver.schemes!r}) on references listed by "
            f"foreign_references(): expected False for each, got True for "
            + "; ".join(f"{' and '.join(c)}({r!r})" for r, c in claimed.items())
        )

    def test_does_not_claim_other_plugins_references_or_plaintext(
        self, resolver: SecretResolver
    ) -> None:
        """Always checked: a resolver that claims too much takes another plugin's
        reference, or a literal secret, and sends the wrong value to Entra ID."""
        own = {s.lower() for s in resolver.schemes}
        claimed = [
            f"{' and '.join(c)}({reference!r}) ({what})"
            for scheme, reference, what in FOREIGN_REFERENCES
            if scheme not in own and (c := self._claimed(resolver, reference))
        ]
        assert not claimed, (
            f"{type(resolver).__name__} (schemes {resolver.schemes!r}): expected False for "
            f"other plugins' references and plaintext secrets, got True for " + "; ".join(claimed)
        )

    def test_missing_secret_is_a_clear_error(self, resolver: SecretResolver) -> None:
        reference = self.missing_reference()
        assert resolver.claims(reference), (
            f"claims({reference!r}) for missing_reference(): expected True, got False"
        )
        try:
            got = resolver.resolve(reference, make_request("default", resolvers=(resolver,)))
        except SecretReferenceError as exc:
            message = str(exc)
        except Exception as exc:
            pytest.fail(
                f"resolve({reference!r}) of a missing secret: expected SecretReferenceError, "
                f"got {_show(exc)}"
            )
        else:
            pytest.fail(
                f"resolve({reference!r}) of a missing secret: expected SecretReferenceError, "
                f"got a {type(got).__name__} value"
            )
        assert message.strip(), (
            f"SecretReferenceError for {reference!r}: expected a message, got an empty one"
        )

    def test_resolves_through_a_source_request(self, resolver: SecretResolver) -> None:
        value = f"s3cr3t-{uuid.uuid4().hex}"
        reference = self.provision_secret(value)
        request = make_request("default", resolvers=(resolver,))
        resolved = request.resolve({"ref": reference}, "client_secret")
        text = resolved.decode() if isinstance(resolved, bytes) else resolved
        assert text == value, (
            f"request.resolve({{'ref': {reference!r}}}): expected the stored value, got "
            f"{'the reference itself' if text == reference else 'a different value'}"
        )

    def test_registers_through_the_hook(self, resolver: SecretResolver) -> None:
        if self.plugin is None:
            pytest.skip("set `plugin` to the module the entry point names")
        found = _registered(self.plugin, "ppauth_register_secret_resolvers")
        types = [type(r) for r in found]
        assert type(resolver) in types, (
            f"ppauth_register_secret_resolvers: expected register() called with a "
            f"{type(resolver).__name__} instance, got {[t.__name__ for t in types]}"
        )


# the cache backend contract lives in its own module; importable from here as well
from requests_ppauth.testing.cache_contract import (  # noqa: E402
    CacheBackendContract as CacheBackendContract,
)
