"""Contract tests that every credential-source plugin should pass.

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

Override :meth:`provision_broken` to prove that "mine but broken" raises
:class:`~requests_ppauth.SourceError`, and subclass :class:`ResolverContract` for a
secret resolver. The tests use only the public plugin API.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import pytest

from requests_ppauth import hookspecs
from requests_ppauth.credentials import Credential
from requests_ppauth.errors import SecretReferenceError, SourceError
from requests_ppauth.source_api import CredentialSource, SecretResolver, SourceRequest


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
    pm.check_pending()  # a misspelt hook name fails here
    found: list[Any] = []
    getattr(pm.hook, hook)(
        register=lambda *args: found.append(args[-1] if len(args) == 1 else args)
    )
    return found


class SourceContract:
    """Subclass, provide the ``source`` fixture and :meth:`provision`."""

    plugin: ModuleType | object | None = None

    @pytest.fixture
    def source(self) -> CredentialSource:
        raise NotImplementedError("provide a `source` fixture returning the source")

    def provision(self, profile: str) -> ExpectedCredential:
        """Store a credential for ``profile`` where the source looks; describe it."""
        raise NotImplementedError

    def provision_broken(self, profile: str) -> None:
        """Store something the source recognises but cannot use. Skip if not overridden."""
        pytest.skip("this source has no 'recognised but broken' state to provision")

    def request_for(self, profile: str) -> SourceRequest:
        """The request the core would make for ``profile`` (override to add settings)."""
        return make_request(profile)

    # -- the contract -----------------------------------------------------------------
    def test_satisfies_the_protocol(self, source: CredentialSource) -> None:
        assert isinstance(source, CredentialSource)
        assert isinstance(source.name, str)
        assert source.name
        assert source.name == source.name.lower()
        assert isinstance(source.priority, int)

    def test_unknown_profile_passes_with_a_reason(self, source: CredentialSource) -> None:
        request = self.request_for(f"no-such-profile-{uuid.uuid4().hex[:8]}")
        assert source.credential(request) is None
        assert request.notes, "call request.note(reason) before returning None"
        assert all(isinstance(n, str) and n.strip() for n in request.notes)

    def test_finds_a_provisioned_credential(self, source: CredentialSource) -> None:
        profile = f"contract-{uuid.uuid4().hex[:8]}"
        expected = self.provision(profile)
        credential = source.credential(self.request_for(profile))
        assert isinstance(credential, Credential)
        assert credential.kind == expected.kind
        assert credential.tenant_id == expected.tenant_id
        assert credential.client_id == expected.client_id

    def test_secrets_never_show_in_repr(self, source: CredentialSource) -> None:
        profile = f"contract-{uuid.uuid4().hex[:8]}"
        expected = self.provision(profile)
        credential = source.credential(self.request_for(profile))
        shown = repr(credential) + str(credential) + repr(source)
        for secret in expected.secrets:
            assert secret not in shown

    def test_recognised_but_broken_raises_source_error(self, source: CredentialSource) -> None:
        profile = f"broken-{uuid.uuid4().hex[:8]}"
        self.provision_broken(profile)
        with pytest.raises(SourceError) as info:
            source.credential(self.request_for(profile))
        assert info.value.source == source.name

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
        assert len(results) == 8
        assert all(
            isinstance(r, Credential) and r.client_id == expected.client_id for r in results
        ), results

    def test_credentials_pickle(self, source: CredentialSource) -> None:
        """Auth objects travel to worker processes with their credential."""
        profile = f"contract-{uuid.uuid4().hex[:8]}"
        self.provision(profile)
        credential = source.credential(self.request_for(profile))
        assert pickle.loads(pickle.dumps(credential)) == credential  # noqa: S301 - our own bytes

    def test_registers_through_the_hook(self, source: CredentialSource) -> None:
        if self.plugin is None:
            pytest.skip("set `plugin` to the module the entry point names")
        found = _registered(self.plugin, "ppauth_register_sources")
        assert [type(s) for s in found] == [type(source)]
        assert found[0].name == source.name


class ResolverContract:
    """Subclass, provide the ``resolver`` fixture and the three methods below."""

    plugin: ModuleType | object | None = None

    @pytest.fixture
    def resolver(self) -> SecretResolver:
        raise NotImplementedError("provide a `resolver` fixture")

    def provision_secret(self, value: str) -> str:
        """Store ``value``; return the reference that names it."""
        raise NotImplementedError

    def missing_reference(self) -> str:
        """A well-formed reference to a secret that does not exist."""
        raise NotImplementedError

    def foreign_references(self) -> list[str]:
        """References that are not this resolver's."""
        return ["nosuchscheme:abc", "plain-secret-value", "pa:ss"]

    def test_satisfies_the_protocol(self, resolver: SecretResolver) -> None:
        assert isinstance(resolver, SecretResolver)
        assert resolver.schemes
        assert all(isinstance(s, str) and s == s.lower() for s in resolver.schemes)

    def test_resolves_what_it_claims(self, resolver: SecretResolver) -> None:
        value = f"s3cr3t-{uuid.uuid4().hex}"
        reference = self.provision_secret(value)
        assert resolver.claims(reference)
        resolved = resolver.resolve(reference, make_request("default", resolvers=(resolver,)))
        assert (resolved.decode() if isinstance(resolved, bytes) else resolved) == value

    def test_does_not_claim_others(self, resolver: SecretResolver) -> None:
        for reference in self.foreign_references():
            assert not resolver.claims(reference), reference

    def test_missing_secret_is_a_clear_error(self, resolver: SecretResolver) -> None:
        reference = self.missing_reference()
        assert resolver.claims(reference)
        with pytest.raises(SecretReferenceError) as info:
            resolver.resolve(reference, make_request("default", resolvers=(resolver,)))
        assert str(info.value).strip()

    def test_resolves_through_a_source_request(self, resolver: SecretResolver) -> None:
        value = f"s3cr3t-{uuid.uuid4().hex}"
        reference = self.provision_secret(value)
        request = make_request("default", resolvers=(resolver,))
        resolved = request.resolve({"ref": reference}, "client_secret")
        assert (resolved.decode() if isinstance(resolved, bytes) else resolved) == value

    def test_registers_through_the_hook(self, resolver: SecretResolver) -> None:
        if self.plugin is None:
            pytest.skip("set `plugin` to the module the entry point names")
        found = _registered(self.plugin, "ppauth_register_secret_resolvers")
        assert type(resolver) in [type(r) for r in found]


# the cache backend contract lives in its own module; importable from here as well
from requests_ppauth.testing.cache_contract import (  # noqa: E402
    CacheBackendContract as CacheBackendContract,
)
