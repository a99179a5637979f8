"""Every test runs isolated: no real credentials, config or cache can leak in or out."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from requests_ppauth.testing.pytest_plugin import PPAuthEnv

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _environ_guard() -> Iterator[None]:
    """Fail a test that changes os.environ without monkeypatch (tox does the same)."""
    before = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    yield
    after = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    if before != after:
        changed = sorted(set(before.items()) ^ set(after.items()))
        for key in set(after) - set(before):
            del os.environ[key]
        os.environ.update(before)
        pytest.fail(f"test leaked environment changes: {[k for k, _ in changed]}")


# The core's tests speak of the env and file sources; the plugins installed beside
# them (keyring, keyvault, the docs' example) have their own test suites, and the
# managed identity source (asked last) has tests that turn it back on.
THIRD_PARTY_PLUGINS = "*,managed"


@pytest.fixture(autouse=True)
def _isolated(ppauth_env: PPAuthEnv) -> Iterator[PPAuthEnv]:
    """Every test gets the isolated environment of the shipped plugin, and a plugin
    manager loaded afresh with only the built-in sources."""
    from requests_ppauth.plugins import reset_plugins

    ppauth_env.set(PPAUTH_DISABLE_PLUGINS=THIRD_PARTY_PLUGINS)
    reset_plugins()
    yield ppauth_env
    reset_plugins()


@pytest.fixture
def children():
    """Start cache worker processes with ``children(*args)`` (see tests/_cache_worker.py);
    every one still running is killed at the end."""
    from tests._cache_worker import Child

    started: list[Child] = []

    def start(*args: str, umask: int = -1) -> Child:
        child = Child(*args, umask=umask)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()
