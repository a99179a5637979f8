"""Fixtures for the Redis plugin's tests: a real ``redis-server``, and isolation.

Runs from the repository root (``python -m pytest plugins/redis/tests``) or from this
directory; needs nothing from the core's ``tests/conftest.py`` and keeps its promises:
no ``os.environ`` leak, no real credential, config or cache touched.

Every test meets a real server (Debian: ``apt-get install redis-server``): without
one the tests skip, or fail when ``CI`` is set, so a CI image that lost it cannot
pass by skipping.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from requests_ppauth_redis import _warnings
from requests_ppauth_redis.testing import RedisServer, new_cache_key, redis_server_path

from requests_ppauth.plugins import reset_plugins
from requests_ppauth.testing.pytest_plugin import PPAuthEnv


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _need_redis_server() -> None:
    if redis_server_path() is None:
        message = "redis-server not found (Debian/Ubuntu: apt-get install redis-server)"
        if in_ci():
            pytest.fail(f"{message}. CI is set, so this is a failure, not a skip.", pytrace=False)
        pytest.skip(message)


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def _environ_guard() -> Iterator[None]:
    """Fail a test that changes os.environ without monkeypatch."""
    before = _environ()
    yield
    after = _environ()
    if before != after:
        changed = sorted({k for k, _ in set(before.items()) ^ set(after.items())})
        for key in set(after) - set(before):
            del os.environ[key]
        os.environ.update(before)
        pytest.fail(f"test leaked environment changes: {changed}")


@pytest.fixture(autouse=True)
def _isolated(ppauth_env: PPAuthEnv) -> Iterator[PPAuthEnv]:
    """The shipped isolated environment, plugins loaded afresh, this process's
    once-per-process warnings reset."""
    reset_plugins()
    _warnings.reset()
    yield ppauth_env
    reset_plugins()
    _warnings.reset()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` for one test (a test may kill, pause or restart it)."""
    _need_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_session_server() -> Iterator[RedisServer]:
    """One ``redis-server`` for the session: tests using it must use their own prefix
    (see ``redis_prefix``) and must not stop it."""
    _need_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def cache_key() -> str:
    """A fresh PPAUTH_CACHE_KEY value."""
    return new_cache_key()


@pytest.fixture
def redis_env(ppauth_env: PPAuthEnv, redis_server: RedisServer, cache_key: str) -> RedisServer:
    """PPAUTH_REDIS_URL and PPAUTH_CACHE_KEY set for this test's own server."""
    ppauth_env.set(PPAUTH_REDIS_URL=redis_server.url, PPAUTH_CACHE_KEY=cache_key)
    return redis_server


# -- processes of a fleet --------------------------------------------------------------
WORKER = Path(__file__).with_name("_fleet_worker.py")


class FleetProcess:
    """One ``_fleet_worker.py`` process: its "machine" is its PPAUTH_CACHE_DIR."""

    def __init__(self, mode: str, environ: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), mode],
            env=environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self, timeout: float = 30.0) -> str:
        """The next line it prints (a failure naming its stderr past ``timeout``)."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        text = self.process.stdout.readline() if ready else ""
        if not text:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            pytest.fail(f"a fleet process printed nothing within {timeout} s; stderr:\n{err}")
        return text.strip()

    def ready(self) -> None:
        got = self.line(60)
        assert got == "ready", f"a fleet process: expected 'ready', got {got!r}"

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        text = self.line(timeout)
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError:
            pytest.fail(f"a fleet process: expected its JSON result, got {text!r}")
        return data

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


@pytest.fixture
def fleet(ppauth_env: PPAuthEnv) -> Iterator[Callable[..., FleetProcess]]:
    """``fleet(machine, mode="token", **env)``: a process of "machine" (a name: its
    own PPAUTH_CACHE_DIR under this test's directory) with this test's environment
    plus ``env``; every one still running is killed at the end."""
    started: list[FleetProcess] = []

    def start(machine: str, mode: str = "token", **env: str) -> FleetProcess:
        directory = ppauth_env.root / "machines" / machine
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        environ = {**os.environ, "PPAUTH_CACHE_DIR": str(directory / "cache"), **env}
        process = FleetProcess(mode, environ)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
