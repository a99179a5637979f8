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


@pytest.fixture(autouse=True)
def _isolated(ppauth_env: PPAuthEnv) -> PPAuthEnv:
    """Every test gets the isolated environment of the shipped plugin."""
    return ppauth_env
