"""The session check of tests/conftest.py: a run that leaves this project's files in the
temporary directory fails, says what it left, and removes it; a clean run passes.

Each case is a real pytest run in a subprocess (with and without pytest-xdist), given a
TMPDIR of its own under this test's tmp_path, so what it leaves can be counted exactly.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RUN_TMPDIR

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
from tests.conftest import (
    pytest_configure,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_unconfigure,
)
"""


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``run(test_source, *pytest_args)``: the run's result and what is left in its TMPDIR."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.delenv(RUN_TMPDIR, raising=False)  # this run is not inside ours
    monkeypatch.delenv("PYTEST_DEBUG_TEMPROOT", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    pytester.makeconftest(CONFTEST)

    def go(source: str, *args: str) -> tuple[pytest.RunResult, list[str]]:
        pytester.makepyfile(test_it=textwrap.dedent(source))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args)
        return result, sorted(p.name for p in tmp.iterdir())

    return go


def test_a_clean_run_passes_and_leaves_nothing(run):
    result, left = run(
        """
        import tempfile, os

        def test_cleans_up():
            with tempfile.TemporaryDirectory(prefix="ppauth-emulator-") as d:
                assert os.path.isdir(d)
        """
    )
    assert result.ret == 0, result.stdout.str()
    assert "left in the temporary directory" not in result.stdout.str()
    # pytest's own basetemp (pytest-of-<user>) is kept, as pytest keeps it; nothing else
    assert [name for name in left if not name.startswith("pytest-of-")] == []


LEAKY = """
    import os, subprocess, sys, tempfile

    def test_leaks_a_cache_directory():
        d = tempfile.mkdtemp(prefix="ppauth-leak-cache-")
        open(os.path.join(d, "cache.db"), "w").write("a token")

    def test_a_subprocess_leaks_too():
        # a child process inherits the run's TMPDIR, so its leftovers are counted too
        subprocess.run(
            [sys.executable, "-c", "import tempfile; tempfile.mkdtemp(prefix='ppauth-redis-')"],
            check=True,
        )

    def test_something_else_leaks():
        tempfile.mkdtemp(prefix="unrelated-")
    """


@pytest.mark.parametrize("xdist", [False, True], ids=["one-process", "xdist"])
def test_a_leaky_run_fails_names_what_it_left_and_removes_it(run, xdist):
    result, left = run(LEAKY, *(["-n", "2"] if xdist else []))
    out = result.stdout.str()

    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    result.assert_outcomes(passed=3)  # the tests themselves pass: the session check fails
    assert "the run FAILED: tests left 2 entries of this project" in out, out
    assert "ppauth-leak-cache-" in out and "(1 file)" in out and "ppauth-redis-" in out, out
    assert "by something else (removed now): unrelated-" in out, out
    assert "put test files in tmp_path" in out
    assert [name for name in left if not name.startswith("pytest-of-")] == [], left


def test_a_failing_run_keeps_its_own_exit_status(run):
    result, left = run(
        """
        import tempfile

        def test_fails_and_leaks():
            tempfile.mkdtemp(prefix="ppauth-demo-")
            assert False
        """
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "tests left 1 entry of this project" in result.stdout.str()
    assert [name for name in left if not name.startswith("pytest-of-")] == [], left


def test_this_run_has_a_temporary_directory_of_its_own():
    """The check is in force here: tempfile and subprocesses use the run's directory."""
    import tempfile

    private = os.environ[RUN_TMPDIR]
    assert tempfile.gettempdir() == private == os.environ["TMPDIR"]
    assert Path(private).name.startswith("ppauth-test-run-")
