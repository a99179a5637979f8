"""pytest fixtures for code that authenticates against Power Platform.

Loaded automatically (entry point ``pytest11``) wherever requests-ppauth is
installed; importing this module starts nothing. Fixtures:

``ppauth_emulator``
    A fresh :class:`~requests_ppauth.testing.Emulator` for one test.
``ppauth_session_emulator``
    One emulator shared by the whole session (faster; state accumulates).
``ppauth_env``
    An isolated environment: every ``AZURE_*``/``PPAUTH_*`` variable (and the CI
    jobs' OIDC variables) removed,
    config file, cache and platform directories under ``tmp_path``, loopback added
    to ``NO_PROXY`` (the emulator's traffic never reaches the machine's proxy). Use
    ``ppauth_env.use_emulator(emu)`` to point the variables at an emulator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from requests_ppauth.testing.emulator import Emulator

# what a source reads: credentials, and the CI jobs' OIDC endpoints (a test run inside
# a real GitHub Actions or Azure Pipelines job must not federate as that job)
CREDENTIAL_PREFIXES = (
    "AZURE_",
    "PPAUTH_",
    "IDENTITY_",
    "MSI_",
    "ACTIONS_ID_TOKEN_",
    "AZURESUBSCRIPTION_",
    "SYSTEM_OIDCREQUESTURI",
    "SYSTEM_ACCESSTOKEN",
)
LOOPBACK_NO_PROXY = "localhost,127.0.0.1,::1"


class PPAuthEnv:
    """Handle returned by the ``ppauth_env`` fixture."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self._mp = monkeypatch
        self.root = root
        self.config_path = root / "config" / "ppauth.toml"
        self.cache_dir = root / "cache"
        for name in list(os.environ):
            if name.startswith(CREDENTIAL_PREFIXES):
                monkeypatch.delenv(name)
        for sub, var in (
            ("xdg-config", "XDG_CONFIG_HOME"),
            ("xdg-cache", "XDG_CACHE_HOME"),
            ("xdg-data", "XDG_DATA_HOME"),
            ("home", "HOME"),
        ):
            path = root / sub
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            monkeypatch.setenv(var, str(path))
        self.config_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        monkeypatch.setenv("PPAUTH_CONFIG", str(self.config_path))
        monkeypatch.setenv("PPAUTH_CACHE_DIR", str(self.cache_dir))
        # The emulator listens on loopback, and identity traffic honours HTTPS_PROXY as
        # requests does (loopback included): behind a corporate proxy, the tests' traffic
        # to the emulator must still go direct. The machine's own exemptions are kept.
        exempt = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
        exempt = ",".join(filter(None, (exempt, LOOPBACK_NO_PROXY)))
        monkeypatch.setenv("no_proxy", exempt)
        monkeypatch.setenv("NO_PROXY", exempt)

    def set(self, **variables: str | None) -> None:
        """Set (or, with ``None``, remove) environment variables for this test."""
        for name, value in variables.items():
            if value is None:
                self._mp.delenv(name, raising=False)
            else:
                self._mp.setenv(name, value)

    def write_config(self, text: str, mode: int = 0o600) -> Path:
        """Write the TOML config file with ``mode`` permissions."""
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(self.config_path, mode)
        return self.config_path

    def use_emulator(self, emu: Emulator, flow: str = "secret") -> None:
        """Point ``PPAUTH_*`` variables at ``emu``'s sample credentials.

        ``flow`` is ``secret``, ``certificate`` or ``password``.
        """
        sample = emu.sample
        if sample is None:
            raise ValueError("the emulator was started with sample=False")
        self.set(
            PPAUTH_TENANT_ID=sample.tenant_id,
            PPAUTH_AUTHORITY_HOST=emu.authority_host,
            PPAUTH_CA_BUNDLE=emu.ca_bundle,
        )
        if flow == "secret":
            self.set(PPAUTH_CLIENT_ID=sample.client_id, PPAUTH_CLIENT_SECRET=sample.client_secret)
        elif flow == "certificate":
            path = self.root / "client-cert.pem"
            path.write_bytes(sample.certificate.pem_bundle)
            path.chmod(0o600)
            self.set(
                PPAUTH_CLIENT_ID=sample.cert_client_id, PPAUTH_CLIENT_CERTIFICATE_PATH=str(path)
            )
        elif flow == "password":
            self.set(
                PPAUTH_CLIENT_ID=sample.public_client_id,
                PPAUTH_USERNAME=sample.username,
                PPAUTH_PASSWORD=sample.password,
            )
        else:
            raise ValueError(f"unknown flow {flow!r}: secret, certificate or password")


@pytest.fixture
def ppauth_emulator() -> Iterator[Emulator]:
    """A fresh emulator for one test."""
    with Emulator() as emu:
        yield emu


@pytest.fixture(scope="session")
def ppauth_session_emulator() -> Iterator[Emulator]:
    """One emulator for the whole session."""
    with Emulator() as emu:
        yield emu


@pytest.fixture
def ppauth_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> PPAuthEnv:
    """An environment that cannot touch the user's real files or credentials."""
    root = tmp_path / "ppauth-env"
    root.mkdir(mode=0o700)
    return PPAuthEnv(monkeypatch, root)
