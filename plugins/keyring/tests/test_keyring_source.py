"""The source and resolver beyond the contract: every credential kind, settings, failures.

Against keyrings.alt's file backend (fast, per-test), except where a real Secret Service
failure is the point. A stand-in backend appears only for states no real one can be put
in on demand here (a keyring locked by the desktop, a backend that raises on write).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import SecretService, chainer, fail, null
from keyring.errors import KeyringLocked, PasswordSetError
from requests_ppauth_keyring import (
    KeyringBackendError,
    KeyringResolver,
    KeyringSource,
    delete_secret,
    has_secret,
    parse_reference,
    profile_username,
    set_secret,
)

from requests_ppauth import (
    ClientCertificate,
    ClientSecret,
    SecretReferenceError,
    SourceError,
    UsernamePassword,
)
from requests_ppauth.testing.contract import make_request

SECRET = "unit-s3cret-9c1e"
IDS = {"tenant_id": "tenant-1.example", "client_id": "client-1"}


def lookup(profile: str = "prod", **settings: Any) -> Any:
    request = make_request(profile, settings=settings)
    return KeyringSource().credential(request), request


@pytest.fixture(autouse=True)
def _file_keyring(file_keyring: Any) -> Any:
    """keyrings.alt's file backend; the failure tests below replace it with theirs."""
    return file_keyring


# -- credential kinds ----------------------------------------------------------------------
def test_client_secret() -> None:
    set_secret("prod", "client_secret", SECRET)
    credential, _ = lookup(**IDS, authority_host="https://login.example")
    assert credential == ClientSecret(
        tenant_id="tenant-1.example", client_id="client-1", authority_host="https://login.example",
        secret=SECRET,
    )  # fmt: skip


def test_certificate_password(tmp_path: Path) -> None:
    path = tmp_path / "client.pfx"
    path.write_bytes(b"pkcs12-bytes")
    path.chmod(0o600)  # a key file open to others is refused
    set_secret("prod", "certificate_password", SECRET)
    credential, _ = lookup(**IDS, certificate_path=str(path), send_certificate_chain=True)
    assert isinstance(credential, ClientCertificate)
    assert credential.certificate == b"pkcs12-bytes"
    assert credential.password == SECRET
    assert credential.send_certificate_chain
    assert SECRET not in repr(credential)


def test_certificate_file_missing_is_a_source_error(tmp_path: Path) -> None:
    set_secret("prod", "certificate_password", SECRET)
    with pytest.raises(SourceError, match=r"^\[keyring\] certificate_path of \[profiles.prod\]"):
        lookup(**IDS, certificate_path=str(tmp_path / "nope.pfx"))


def test_user_password() -> None:
    set_secret("prod", "password", SECRET)
    credential, _ = lookup(client_id="public-1", username="alice@example.com")
    assert credential == UsernamePassword(
        tenant_id="organizations", client_id="public-1", username="alice@example.com",
        password=SECRET,
    )  # fmt: skip


def test_the_profile_settings_pick_among_stored_secrets(tmp_path: Path) -> None:
    for field in ("client_secret", "password"):
        set_secret("prod", field, f"{field}-{SECRET}")
    assert lookup(**IDS)[0].kind == "secret"
    assert lookup(**IDS, username="alice")[0].kind == "password"
    # the profile wants a certificate password the keyring does not hold: the first stored
    path = tmp_path / "c.pem"
    path.write_bytes(b"pem")
    assert lookup(**IDS, certificate_path=str(path))[0].kind == "secret"


@pytest.mark.parametrize(
    ("field", "settings", "missing"),
    [
        ("client_secret", {}, "tenant_id, client_id: add them"),
        ("client_secret", {"client_id": "c"}, "tenant_id: add it"),
        ("certificate_password", IDS, "certificate_path"),
        ("password", {"client_id": "c"}, "username"),
    ],
)
def test_secret_without_what_it_needs(field: str, settings: dict[str, str], missing: str) -> None:
    set_secret("prod", field, SECRET)
    with pytest.raises(SourceError) as info:
        lookup(**settings)
    message = str(info.value)
    assert f"the keyring holds the {field} of profile 'prod'" in message
    assert f"has no {missing}" in message
    assert SECRET not in message


# -- settings --------------------------------------------------------------------------------
def test_profile_service() -> None:
    set_secret("prod", "client_secret", SECRET, service="team")
    credential, request = lookup(**IDS)
    assert credential is None
    assert "service 'requests-ppauth'" in request.notes[-1]
    credential, _ = lookup(**IDS, keyring={"service": "team"})
    assert credential.secret == SECRET
    credential, request = lookup("dev", **IDS, keyring={"service": "team"})
    assert credential is None
    assert request.notes[-1].endswith("set dev client_secret --service team`")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"servise": "x"}, r"unknown key\(s\) servise; allowed: service"),
        ({"service": ""}, "service must be a non-empty string"),
        ({"service": 3}, "service must be a non-empty string"),
        ("team", "must be a table"),
    ],
)
def test_bad_keyring_table(table: Any, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        lookup(**IDS, keyring=table)


def test_pass_note_says_where_it_looked_and_how_to_store() -> None:
    credential, request = lookup("dev", **IDS)
    assert credential is None
    assert request.notes == [
        "no secret for profile 'dev' in the keyring (service 'requests-ppauth', usernames "
        "dev:client_secret / :certificate_password / :password); store one with "
        "`python -m requests_ppauth_keyring set dev client_secret`"
    ]


def test_store_functions() -> None:
    assert profile_username("a:b", "password") == "a:b:password"
    assert not has_secret("prod", "password")
    set_secret("prod", "password", SECRET)
    assert has_secret("prod", "password")
    assert delete_secret("prod", "password")
    assert not delete_secret("prod", "password")
    with pytest.raises(ValueError, match="unknown secret field 'secret'"):
        set_secret("prod", "secret", SECRET)
    with pytest.raises(ValueError, match="empty secret"):
        set_secret("prod", "password", "")
    with pytest.raises(ValueError, match="profile name is empty"):
        set_secret("", "password", SECRET)


def test_nothing_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    set_secret("prod", "client_secret", SECRET)
    lookup(**IDS)
    KeyringResolver().resolve("keyring:prod:client_secret", make_request("prod"))
    delete_secret("prod", "client_secret")
    assert "keyring hit: 'prod:client_secret'" in caplog.text
    assert SECRET not in caplog.text


# -- the resolver ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reference", "parsed"),
    [
        ("keyring:prod", ("requests-ppauth", "prod")),
        ("KEYRING:prod", ("requests-ppauth", "prod")),
        ("keyring:prod:client_secret", ("requests-ppauth", "prod:client_secret")),
        ("keyring:corp/alice", ("corp", "alice")),
        ("keyring:corp/team/alice", ("corp", "team/alice")),
    ],
)
def test_parse_reference(reference: str, parsed: tuple[str, str]) -> None:
    assert parse_reference(reference) == parsed
    assert KeyringResolver().claims(reference)


@pytest.mark.parametrize("reference", ["keyring:", "keyring:/alice", "keyring:corp/"])
def test_malformed_reference(reference: str) -> None:
    with pytest.raises(SecretReferenceError, match="malformed keyring reference"):
        KeyringResolver().resolve(reference, make_request("prod"))


# -- no usable backend, and backends that fail ------------------------------------------------
class EmptyChainer(chainer.ChainerBackend):
    """What keyring selects when it chains nothing (no backend with a positive priority)."""

    backends = ()


class Locked(KeyringBackend):
    """A Secret Service whose collection the user would not unlock."""

    priority = 1

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("Failed to unlock the collection!")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise PasswordSetError(f"cannot store {password}")  # a careless backend

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("Failed to unlock the collection!")


@pytest.mark.parametrize(
    ("backend", "words"),
    [
        (
            fail.Keyring(),
            ("no usable keyring backend", "gnome-keyring", "pip install keyrings.alt"),
        ),
        (EmptyChainer(), ("no usable keyring backend", "gnome-keyring", "keyrings.alt")),
        (null.Keyring(), ("the keyring is disabled", "keyring.backends.null.Keyring")),
        (Locked(), ("the keyring is locked", "unlock it")),
    ],
    ids=["fail", "empty-chainer", "null", "locked"],
)
def test_unusable_backend(backend: KeyringBackend, words: tuple[str, ...]) -> None:
    keyring.set_keyring(backend)
    credential, request = lookup(**IDS)
    assert credential is None
    assert all(w in request.notes[-1] for w in words), request.notes
    for settings in ({"keyring": {}}, {"sources": ["keyring"]}):  # profiles that use it
        with pytest.raises(SourceError) as info:
            lookup(**IDS, **settings)
        assert all(w in str(info.value) for w in words)
    with pytest.raises(SecretReferenceError) as ref:
        KeyringResolver().resolve("keyring:prod", make_request("prod"))
    assert all(w in str(ref.value) for w in words)
    with pytest.raises(KeyringBackendError) as stored:
        set_secret("prod", "client_secret", SECRET)
    assert SECRET not in str(stored.value)


def test_secret_service_without_a_bus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real SecretService backend whose bus is gone: a clear error, no D-Bus traceback."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    keyring.set_keyring(SecretService.Keyring())
    credential, request = lookup(**IDS)
    assert credential is None
    assert request.notes[-1].startswith("the keyring backend failed to read 'prod:client_secret'")
    assert "[keyring.backends.SecretService.Keyring]" in request.notes[-1]
    with pytest.raises(SourceError) as info:
        lookup(**IDS, keyring={})
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_backend_messages_that_may_quote_secrets_are_not_shown(
    file_keyring: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt keyring file: configparser's error quotes the line; ours names the class."""
    caplog.set_level(logging.DEBUG)
    path = Path(file_keyring.backend.file_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{SECRET}\n")
    with pytest.raises(SourceError) as info:
        lookup(**IDS, keyring={})
    message = str(info.value)
    assert "failed to read 'prod:client_secret'" in message
    assert "(configparser.MissingSectionHeaderError)" in message
    assert SECRET not in message + caplog.text


def test_importing_the_plugin_does_not_import_keyring() -> None:
    code = "import sys, requests_ppauth_keyring; print('keyring' in sys.modules)"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "False"


# -- the resolver as a secret store (what `ppauth profile add` uses) ----------------------
def test_resolver_stores_where_the_source_looks_and_deletes() -> None:
    from requests_ppauth.source_api import SecretStore

    resolver = KeyringResolver()
    assert isinstance(resolver, SecretStore)
    reference = resolver.store("prod", "client_secret", SECRET)
    assert reference == "keyring:prod:client_secret"
    assert SECRET not in reference
    credential, _ = lookup(**IDS)
    assert credential.secret == SECRET  # the source finds what the store kept
    assert resolver.resolve(reference, make_request("prod")) == SECRET
    assert resolver.delete(reference) is True
    assert resolver.delete(reference) is False
    credential, request = lookup(**IDS)
    assert credential is None
    assert request.notes


def test_ppauth_mounts_the_keyring_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "requests_ppauth", "keyring", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "set" in out.stdout
    assert "get-status" in out.stdout
