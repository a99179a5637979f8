"""A stopped Secret Service (gnome-keyring-daemon under SIGSTOP: what a hung agent looks
like) costs a lookup PPAUTH_KEYRING_TIMEOUT seconds and a clear error, not forever; the
agent resumed, the keyring answers again. Found by the source contract's "unavailable
store" case: before, the read gave no answer for over 40 s."""

from __future__ import annotations

import os
import signal
import time

import pytest
from requests_ppauth_keyring import _store
from requests_ppauth_keyring._store import KeyringBackendError

from .conftest import DAEMON_PIDS

SERVICE = "requests-ppauth-hung-test"


def test_a_stopped_agent_is_a_bounded_clear_error(secret_service_keyring, ppauth_env):
    _store.put(SERVICE, "default:client_secret", "s3cret-hung")
    pid = DAEMON_PIDS["gnome-keyring-daemon"]
    ppauth_env.set(PPAUTH_KEYRING_TIMEOUT="1")
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(KeyringBackendError, match=r"did not answer within 1 s") as exc:
            _store.get(SERVICE, "default:client_secret")
        waited = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert waited < 3.5, f"a stopped agent held the read for {waited:.1f} s (timeout 1 s)"
    assert "PPAUTH_KEYRING_TIMEOUT" in str(exc.value) and "s3cret" not in str(exc.value)
    ppauth_env.set(PPAUTH_KEYRING_TIMEOUT="10")
    assert _store.get(SERVICE, "default:client_secret") == "s3cret-hung"  # resumed: answers
    _store.remove(SERVICE, "default:client_secret")


@pytest.mark.parametrize("value", ["0", "-1", "soon", "99999"])
def test_a_bad_timeout_names_the_variable(ppauth_env, value):
    ppauth_env.set(PPAUTH_KEYRING_TIMEOUT=value)
    with pytest.raises(KeyringBackendError, match="PPAUTH_KEYRING_TIMEOUT"):
        _store.call_timeout()
