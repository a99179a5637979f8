"""Every test runs isolated: no real credentials, config or cache can leak in or out,
and a run leaves nothing behind in the temporary directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
# managed identity and GitHub Actions sources have tests that turn them back on (and a
# run inside a real GitHub Actions job must not federate as it).
THIRD_PARTY_PLUGINS = "*,managed,github,azure_pipelines"


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


# -- nothing left in /tmp -----------------------------------------------------------------
#
# Test code, fixtures and the processes they start put their temporary files (token
# caches, CA bundles, redis data) where ``tempfile`` says. For the run, that is a
# directory of its own, made by the process that configures first (the xdist controller,
# or the only process) and inherited by xdist workers and every subprocess through
# TMPDIR: whatever is still in it when the run ends was left by this run and no other,
# even with other test runs on the machine. pytest's own tmp_path directories stay where
# they always are (PYTEST_DEBUG_TEMPROOT), under pytest's retention policy.

RUN_TMPDIR = "REQUESTS_PPAUTH_TEST_TMPDIR"  # not PPAUTH_*: the fixtures clear those
PROJECT_PREFIXES = ("ppauth-", "ppauth_", "requests-ppauth", "requests_ppauth")
# Nothing is kept on purpose (the port-443 lock is an abstract unix socket, not a file);
# a name added here must say why.
KEPT_ON_PURPOSE: frozenset[str] = frozenset()


@dataclass
class _RunTmp:
    """The run's temporary directory, what it replaced, and what the run left in it."""

    dir: str
    saved: dict[str, str | None]
    tempdir: str | None
    project: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)


_run_tmp = pytest.StashKey[_RunTmp]()


def pytest_configure(config: pytest.Config) -> None:
    """Point ``tempfile`` and TMPDIR at a directory of this run's own (controller only)."""
    if os.environ.get(RUN_TMPDIR):  # an xdist worker, or a run inside a run: inherited
        return
    real = tempfile.gettempdir()
    private = tempfile.mkdtemp(prefix=f"ppauth-test-run-{os.getpid()}-", dir=real)
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "PYTEST_DEBUG_TEMPROOT")}
    config.stash[_run_tmp] = _RunTmp(private, saved, tempfile.tempdir)
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", real)  # before TMPDIR changes
    os.environ[RUN_TMPDIR] = private
    os.environ["TMPDIR"] = private
    tempfile.tempdir = private


def _describe(path: Path) -> str:
    if path.is_dir() and not path.is_symlink():
        files = sum(1 for p in path.rglob("*") if not p.is_dir())
        return f"{path.name}/ ({files} file{'s' if files != 1 else ''})"
    return path.name


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run when it left files of this project in the temporary directory;
    remove whatever it left either way, so a failing run does not pile up tokens."""
    state = session.config.stash.get(_run_tmp, None)
    if state is None:
        return
    root = Path(state.dir)
    if not root.is_dir():
        return
    entries = sorted(root.iterdir())
    left = [p for p in entries if p.name not in KEPT_ON_PURPOSE]
    state.project = [_describe(p) for p in left if p.name.startswith(PROJECT_PREFIXES)]
    state.others = [_describe(p) for p in left if not p.name.startswith(PROJECT_PREFIXES)]
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if state.project and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say what the run left in the temporary directory (sessionfinish has removed it)."""
    state = terminalreporter.config.stash.get(_run_tmp, None)
    if state is None:
        return
    project, others = state.project, state.others
    if project:
        terminalreporter.section("left in the temporary directory", sep="=", red=True)
        terminalreporter.write_line(
            f"the run FAILED: tests left {len(project)} entr{'ies' if len(project) != 1 else 'y'}"
            " of this project in the temporary directory (removed now): " + ", ".join(project)
        )
        terminalreporter.write_line(
            "put test files in tmp_path, or remove them in the fixture that makes them"
        )
    if others:
        terminalreporter.write_line(
            "left in the temporary directory by something else (removed now): " + ", ".join(others),
            yellow=True,
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's temporary directory; give TMPDIR back."""
    state = config.stash.get(_run_tmp, None)
    if state is None:
        return
    shutil.rmtree(state.dir, ignore_errors=True)
    os.environ.pop(RUN_TMPDIR, None)
    for name, value in state.saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = state.tempdir
