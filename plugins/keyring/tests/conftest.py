"""Fixtures for the keyring plugin's tests: a real Secret Service, a file keyring, isolation.

Runs from the repository root (``python -m pytest plugins/keyring/tests``) or from
this directory; needs nothing from the core's ``tests/conftest.py``, and keeps the same
promises: no ``os.environ`` leak, no real credential, config, cache or keyring touched.

The Secret Service is the real one: ``gnome-keyring-daemon`` on a private D-Bus session
bus started for the test session (Debian: ``apt-get install gnome-keyring dbus``).
Without those binaries the Secret Service tests skip, or fail when ``CI`` is set, so a
CI image that lost them cannot pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keyring
import pytest
import secretstorage
import secretstorage.exceptions
from jeepney import message_bus
from jeepney.io.blocking import Proxy
from keyring.backend import KeyringBackend
from keyring.backends import SecretService, fail
from keyrings.alt.file import PlaintextKeyring

from requests_ppauth.plugins import reset_plugins
from requests_ppauth.testing.pytest_plugin import PPAuthEnv

KEYRING_UNLOCK_PASSWORD = b"requests-ppauth-test-login-keyring"
STARTUP_TIMEOUT = 15.0
REQUIRED_BINARIES = ("dbus-daemon", "gnome-keyring-daemon")
DAEMON_PIDS: dict[str, int] = {}  # this session's own daemons, by name
SECRETS_BUS_NAME = "org.freedesktop.secrets"

# `dbus-daemon --session` without its service directories: with them, the first call to
# org.freedesktop.secrets before our daemon owns the name would have D-Bus start a second,
# locked gnome-keyring ("another secret service is running"). Only our daemon is on it.
PRIVATE_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def in_ci() -> bool:
    """Whether ``CI`` is set to a true value (GitHub Actions, GitLab and others set ``true``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class KeyringUnderTest:
    """A backend made current with ``keyring.set_keyring``, and how subprocesses pick it."""

    name: str
    backend: KeyringBackend
    env_name: str  # the PYTHON_KEYRING_BACKEND value that gives a subprocess the same keyring


# Variables a session-scoped fixture set for the whole session (through its own
# MonkeyPatch, undone at session end). A test that first needs that fixture starts it after
# the guard's snapshot, so the guard must not count them as the test's leak.
SESSION_ENVIRON: dict[str, str] = {}


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


# -- isolation -----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _environ_guard() -> Iterator[None]:
    """Fail a test that changes os.environ without monkeypatch (as the core's tests do)."""
    before = _environ()
    yield
    after = _environ()
    for key, value in SESSION_ENVIRON.items():
        if before.get(key) != value and after.get(key) == value:
            before[key] = value  # set during this test by a session fixture, not by the test
    if before != after:
        changed = sorted({k for k, _ in set(before.items()) ^ set(after.items())})
        for key in set(after) - set(before):
            del os.environ[key]
        os.environ.update(before)
        pytest.fail(f"test leaked environment changes: {changed}")


@pytest.fixture(autouse=True)
def _isolated(ppauth_env: PPAuthEnv) -> PPAuthEnv:
    """No AZURE_*/PPAUTH_* variable; config, cache, HOME and XDG directories in tmp_path.

    Also drops PYTHON_KEYRING_BACKEND, so subprocesses pick the backend a test names.
    """
    ppauth_env.set(PYTHON_KEYRING_BACKEND=None)
    return ppauth_env


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    """Each test loads the entry points afresh (PowerPlatformAuth uses a process-wide manager)."""
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture(scope="session", autouse=True)
def _keyring_restored() -> Iterator[None]:
    """Put back whatever backend the process had before these tests changed it."""
    original = keyring.get_keyring()
    yield
    keyring.set_keyring(original)


@pytest.fixture(autouse=True)
def no_keyring() -> KeyringBackend:
    """The ``fail`` backend ("no usable backend") unless a test asks for a real one.

    So no test can read or write the keyring of the person running them.
    """
    backend = fail.Keyring()
    keyring.set_keyring(backend)
    return backend


# -- a real Secret Service -------------------------------------------------------------------
def _login_keyring_unlocked() -> bool:
    """Whether the daemon is on the bus with its default collection unlocked.

    Asks without side effects: keyring's ``get_password`` (or secretstorage's
    ``get_default_collection``) would, before the daemon has read its password, try to
    create or unlock a collection through a prompt nobody can answer here, and leave it
    locked.
    """
    try:
        with contextlib.closing(secretstorage.dbus_init()) as connection:
            # owned, not merely activatable: a call to an unowned name could start another
            if Proxy(message_bus, connection).NameHasOwner(SECRETS_BUS_NAME)[0] != 1:
                return False
            return not secretstorage.Collection(connection).is_locked()  # the default alias
    except secretstorage.exceptions.SecretStorageException:  # not on the bus yet
        return False


def _wait_for_secret_service(daemon: subprocess.Popen[bytes], log: Path) -> KeyringBackend:
    """The SecretService backend once the daemon serves an unlocked login keyring."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _login_keyring_unlocked():
        if daemon.poll() is not None:
            pytest.fail(
                f"gnome-keyring-daemon exited with {daemon.returncode}: {log.read_text()}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"the Secret Service did not serve an unlocked keyring in {STARTUP_TIMEOUT}s; "
                f"gnome-keyring-daemon said: {log.read_text()!r}",
                pytrace=False,
            )
        time.sleep(0.05)
    backend = SecretService.Keyring()
    assert backend.get_password("requests-ppauth-test", "startup-probe") is None
    return backend


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def _empty_secret_service() -> None:
    """Delete every item of the default collection: the daemon is ours, so they are too."""
    with contextlib.closing(secretstorage.dbus_init()) as connection:
        for item in secretstorage.get_default_collection(connection).get_all_items():
            item.delete()


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyringBackend]:
    """GNOME Keyring's Secret Service on a private session bus, for the whole session.

    ``dbus-daemon --fork`` (a session bus without activation) prints its address and
    pid; ``gnome-keyring-daemon --foreground --unlock --components=secrets`` reads the
    login keyring's password on stdin, creates and unlocks that keyring under a
    temporary data directory. Both
    processes are ours (by pid) and are stopped at the end.
    """
    missing = [name for name in REQUIRED_BINARIES if shutil.which(name) is None]
    if missing:
        message = (
            f"{' and '.join(missing)} not found: the Secret Service tests need GNOME Keyring "
            "on a private D-Bus session (Debian/Ubuntu: apt-get install gnome-keyring dbus)"
        )
        if in_ci():
            pytest.fail(f"{message}. CI is set, so this is a failure, not a skip.", pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("secret-service")
    dirs = {}
    for var, sub in (
        ("HOME", "home"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_RUNTIME_DIR", "runtime"),
    ):
        (root / sub).mkdir(mode=0o700)
        dirs[var] = str(root / sub)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **dirs}
    config = root / "session-bus.conf"
    config.write_text(PRIVATE_BUS_CONFIG)
    bus = subprocess.run(
        [
            "dbus-daemon",
            f"--config-file={config}",
            "--fork",
            "--print-address=1",
            "--print-pid=1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=True,
    )
    address, pid_text = bus.stdout.split()
    bus_pid = int(pid_text)
    log = root / "gnome-keyring-daemon.log"
    daemon: subprocess.Popen[bytes] | None = None
    try:
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        with log.open("wb") as log_file:
            daemon = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        assert daemon.stdin is not None
        DAEMON_PIDS["gnome-keyring-daemon"] = daemon.pid  # for tests that stop it
        daemon.stdin.write(KEYRING_UNLOCK_PASSWORD)
        daemon.stdin.close()
        # undone at session end; SESSION_ENVIRON tells the per-test guard it is no leak
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DBUS_SESSION_BUS_ADDRESS", address)
            SESSION_ENVIRON["DBUS_SESSION_BUS_ADDRESS"] = address
            previous = keyring.get_keyring()
            try:
                backend = _wait_for_secret_service(daemon, log)
                keyring.set_keyring(backend)
                yield backend
            finally:
                keyring.set_keyring(previous)
                SESSION_ENVIRON.pop("DBUS_SESSION_BUS_ADDRESS", None)
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
        _kill(bus_pid)


@pytest.fixture
def secret_service_keyring(
    secret_service: KeyringBackend, no_keyring: KeyringBackend
) -> Iterator[KeyringUnderTest]:
    """The real Secret Service as this test's keyring, empty when the test starts and ends."""
    _empty_secret_service()
    keyring.set_keyring(secret_service)
    yield KeyringUnderTest(
        "secret-service", secret_service, "keyring.backends.SecretService.Keyring"
    )
    _empty_secret_service()


@pytest.fixture
def file_keyring(
    ppauth_env: PPAuthEnv, tmp_path: Path, no_keyring: KeyringBackend
) -> KeyringUnderTest:
    """keyrings.alt's plaintext file backend, its file under tmp_path.

    Its default location is ``$XDG_DATA_HOME/python_keyring``, which ``ppauth_env`` put
    in tmp_path: a subprocess with ``PYTHON_KEYRING_BACKEND`` naming it shares the file.
    """
    backend = PlaintextKeyring()
    assert Path(backend.file_path).is_relative_to(tmp_path), backend.file_path
    keyring.set_keyring(backend)
    return KeyringUnderTest("file", backend, "keyrings.alt.file.PlaintextKeyring")


@pytest.fixture(params=["secret-service", "file"])
def any_keyring(request: pytest.FixtureRequest) -> KeyringUnderTest:
    """Each real backend in turn: the Secret Service, then the file backend."""
    fixture = {"secret-service": "secret_service_keyring", "file": "file_keyring"}[request.param]
    found: KeyringUnderTest = request.getfixturevalue(fixture)
    return found
