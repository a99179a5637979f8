"""The core's contract, kept by the Key Vault source and resolver against the emulator."""

from __future__ import annotations

import base64
import uuid

import pytest
from azure.identity import ClientSecretCredential
from requests_ppauth.testing.contract import (
    ExpectedCredential,
    ResolverContract,
    SourceContract,
    make_request,
)

import requests_ppauth_keyvault
from requests_ppauth_keyvault import KeyVaultResolver, KeyVaultSource, SecretCache


class TestKeyVaultSecretSource(SourceContract):
    """A profile whose client secret is a vault secret; the vault read with config."""

    plugin = requests_ppauth_keyvault

    @pytest.fixture
    def source(self, vault):
        self.vault = vault
        self.settings: dict[str, dict] = {}
        return KeyVaultSource()

    def provision(self, profile):
        value = f"pp-secret-{uuid.uuid4().hex}"
        self.settings[profile] = self.vault.settings({"client_secret": self.vault.put(value)})
        s = self.vault.emu.sample
        return ExpectedCredential("secret", s.tenant_id, s.client_id, (value,))

    def provision_broken(self, profile):
        # recognised (the table names a secret) but the secret is not in the vault
        self.settings[profile] = self.vault.settings({"client_secret": self.vault.ref("absent")})

    def provision_unavailable(self, profile):
        # the vault hangs: every read answers only after 3 s, the profile waits 0.5 s
        stored = self.provision(profile)
        self.settings[profile]["keyvault"] |= {"timeout": 0.5, "retries": 0}
        self.vault.emu.inject("vault", latency=3.0, times=None)
        return stored

    def request_for(self, profile):
        return make_request(profile, settings=self.settings.get(profile, {}))


class TestKeyVaultCertificateSource(TestKeyVaultSecretSource):
    """The same, for a certificate kept the way Key Vault keeps one: a PKCS#12 secret."""

    def provision(self, profile):
        s = self.vault.emu.sample
        pfx = base64.b64encode(s.certificate.pfx()).decode()
        reference = self.vault.put(pfx, content_type="application/x-pkcs12")
        self.settings[profile] = self.vault.settings({"certificate": reference})
        return ExpectedCredential("certificate", s.tenant_id, s.client_id, (pfx,))

    def provision_broken(self, profile):
        # a plain secret (no certificate content type, no PEM) named as the certificate
        reference = self.vault.put("not-a-certificate")
        self.settings[profile] = self.vault.settings({"certificate": reference})


class TestKeyVaultResolver(ResolverContract):
    """The resolver with an application-supplied azure-identity credential."""

    plugin = requests_ppauth_keyvault

    @pytest.fixture
    def resolver(self, vault):
        self.vault = vault
        emu = vault.emu
        credential = ClientSecretCredential(
            emu.sample.tenant_id,
            vault.reader_id,
            vault.reader_secret,
            authority=emu.authority_host,
            disable_instance_discovery=True,
            connection_verify=emu.ca_bundle,
        )
        return KeyVaultResolver(
            hosts=[vault.host], credential=credential, ca_bundle=emu.ca_bundle, cache=SecretCache()
        )

    def provision_secret(self, value):
        return self.vault.put(value)

    def missing_reference(self):
        return self.vault.ref("never-stored")

    def foreign_references(self):
        return [
            *super().foreign_references(),
            "https://example.com/secrets/x",
            f"https://127.0.0.1:{self.vault.emu.ports['api']}/secrets/x",  # not allow-listed
            f"{self.vault.emu.authority_host}/common/v2.0",
            "https://contoso.vault.azure.net.example.com/secrets/x",
        ]
