"""`ppauth demo`, `ppauth emulator` and `ppauth register-app`, end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.test_cli import (
    ROOT,
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    failed,
    ok,
    ppauth,
)

# -- demo -------------------------------------------------------------------------------------


@pytest.fixture
def demo_tmp(tmp_path: Path) -> Path:
    """An empty directory for the demo's TMPDIR."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def _demo(*args: str, tmp: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """``ppauth demo ARGS`` with TMPDIR=tmp (so what it leaves can be seen); the wall time
    from before the interpreter starts to after it exits."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    started = time.monotonic()
    proc = ppauth("demo", *args, env=env, timeout=timeout)
    return proc, time.monotonic() - started


def test_demo_small_batch_json(ppauth_env, demo_tmp):
    proc, wall = _demo("--workers", "2", "--calls", "5", "--json", tmp=demo_tmp)
    report = json.loads(ok(proc))  # stdout is the JSON document and nothing else

    assert proc.stderr == ""  # --json: no progress line, no second summary
    assert report["ok"] is True
    assert report["calls"] == 10 and report["succeeded"] == 10 and report["failed"] == 0
    assert report["token_requests"] == 1
    assert 0 < report["auth_overhead_us"] < 1000
    # the total is the whole command, start-up included, and the parts fit in it
    assert report["startup_seconds"] > 0 and report["calls_seconds"] > 0
    assert report["startup_seconds"] + report["calls_seconds"] <= report["total_seconds"]
    assert report["total_seconds"] <= wall, (report["total_seconds"], wall)
    # nothing that is gone is named: the emulator stopped, the temp directory was removed
    assert report["kept"] is False and report["cache"] is None and report["config"] is None
    assert "127.0.0.1" not in proc.stdout and "ppauth-demo-" not in proc.stdout
    assert list(demo_tmp.iterdir()) == []
    # the demo never touched the caller's configuration or cache
    assert not ppauth_env.config_path.exists() and not ppauth_env.cache_dir.exists()


def test_demo_with_the_defaults(ppauth_env, demo_tmp):
    proc, wall = _demo(tmp=demo_tmp)
    out = ok(proc)
    lines = out.splitlines()

    # the heading first, then what it starts; the one summary last
    assert lines[0] == (
        "ppauth demo: 8 processes x 50 API calls, each through a requests Session with "
        "PowerPlatformAuth"
    ), out
    assert lines[1].startswith("starting 8 worker processes and the emulator"), out
    assert "400 by 8 processes: 400 succeeded, 0 failed" in out
    assert "1 to the identity provider (expected 1)" in out
    assert "µs per request" in out
    assert re.fullmatch(
        r"OK: 400/400 calls, 1 token request, in (\d+\.\d) s \(start-up included\)\.", lines[-1]
    ), lines[-1]
    assert out.count("OK:") == 1 and out.count("400/400") == 1
    assert proc.stderr == ""  # no terminal, no --progress: nothing on stderr at all
    # the total includes start-up: what a stopwatch around the command shows, less the
    # interpreter's exit
    total = float(re.search(r"in (\d+\.\d) s \(start-up", lines[-1]).group(1))
    assert wall - 1.5 <= total <= wall + 0.1, (total, wall)
    time_row = next(line for line in lines if line.strip().startswith("time "))
    parts = [float(x) for x in re.findall(r"(\d+\.\d) s", time_row)]
    assert len(parts) == 3 and abs(sum(parts) - total) <= 0.2, (time_row, total)
    # what no longer exists is not named; what was temporary says so
    assert "https://" not in out and "ppauth-demo-" not in out, out
    assert "nothing: the emulator, profile and cache were temporary" in out
    assert list(demo_tmp.iterdir()) == []
    assert wall < 45


def test_demo_progress_and_keep(ppauth_env, demo_tmp):
    proc, _ = _demo(
        "--workers", "1", "--calls", "3", "--progress", "--keep", "--json", tmp=demo_tmp
    )
    report = json.loads(ok(proc))
    try:
        # live redraws (text mode turned each \r into a newline): from the first worker's
        # start, labelled, up to the last call; then the line is erased
        shown = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        label = r"workers started (\d)/1, calls made (\d)/3, token requests (\d), \d+\.\d s"
        assert shown and all(re.fullmatch(label, line) for line in shown), proc.stderr
        first, last = re.fullmatch(label, shown[0]), re.fullmatch(label, shown[-1])
        assert first.groups() == ("0", "0", "0"), shown
        assert last.groups() == ("1", "3", "1"), shown
        assert proc.stderr.endswith("\n")  # the erased line: blanks, then \r
        # kept: named, and there
        assert report["kept"] is True
        assert os.path.exists(report["cache"])
        assert stat_mode(report["config"]) == 0o600
        assert os.path.dirname(report["config"]) == report["directory"]
        assert Path(report["directory"]).parent == demo_tmp
    finally:
        import shutil

        shutil.rmtree(report["directory"], ignore_errors=True)


def test_demo_text_with_keep_names_what_it_kept(ppauth_env, demo_tmp):
    proc, _ = _demo("--workers", "1", "--calls", "2", "--keep", tmp=demo_tmp)
    out = ok(proc)
    (kept,) = demo_tmp.iterdir()
    assert f"the profile and token cache in {kept} (--keep): rm -r {kept} removes them" in out
    assert (kept / "config.toml").is_file()
    assert "https://" not in out  # the emulator has stopped: not named


def stat_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


def test_demo_usage_error():
    failed(ppauth("demo", "--workers", "0"), 2)


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["demo", "--cloud", "china"], "--cloud"),
        (["--cloud", "china", "demo"], "--cloud"),  # before the command too
        (["demo", "--profile", "prod"], "--profile"),
        (["--profile", "prod", "demo", "--workers", "1"], "--profile"),
        (["demo", "--cache", "memory"], "--cache"),
        (["demo", "--authority-host", "https://login.microsoftonline.us"], "--authority-host"),
        (["demo", "--host-scope", "a.example=https://a.example/.default"], "--host-scope"),
        (["demo", "--allow-host", "a.example"], "--allow-host"),
    ],
)
def test_demo_rejects_global_options_it_does_not_use(argv, option, demo_tmp):
    started = time.monotonic()
    proc = ppauth(*argv, env={**os.environ, "TMPDIR": str(demo_tmp)})
    line, hint = failed(proc, 2)
    assert f"`ppauth demo` does not use {option}: it runs against its own emulator" in line
    assert f"drop {option}" in hint
    assert proc.stdout == ""  # refused before the heading: nothing was started
    assert list(demo_tmp.iterdir()) == []
    assert time.monotonic() - started < 20


def test_demo_two_ignored_options_are_both_named():
    line, _ = failed(ppauth("demo", "--cloud", "china", "--cache", "memory"), 2)
    assert "does not use --cloud, --cache" in line


# -- the demo on a real terminal ----------------------------------------------------------


def _screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: each \r returns to column 0 and overwrites."""
    lines = []
    for row in raw.replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        for piece in row.split("\r"):
            cells[: len(piece)] = piece
        lines.append("".join(cells).rstrip())
    return lines


def test_demo_on_a_terminal(ppauth_env, demo_tmp):
    """Through a pty (what a person sees): the heading at once, the labelled progress
    line from the first worker's start, then one summary, the progress line erased."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {**os.environ, "TMPDIR": str(demo_tmp), "COLUMNS": "200"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "requests_ppauth.cli", "demo", "--workers", "2", "--calls", "40"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[tuple[float, str]] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, "the demo said nothing for 60 s"
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append((time.monotonic() - started, data.decode()))
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    raw = "".join(text for _, text in chunks)

    def when(text: str) -> float:
        seen = ""
        for at, chunk in chunks:
            seen += chunk
            if text in seen:
                return at
        raise AssertionError(f"{text!r} never shown:\n{raw}")

    heading = when("ppauth demo: 2 processes x 40 API calls")
    assert raw.startswith("ppauth demo: 2 processes x 40 API calls"), raw[:200]
    assert when("starting 2 worker processes and the emulator") <= when("workers started 0/2")
    # progress is labelled and starts with the first worker, before any worker is ready
    assert heading <= when("workers started 0/2, calls made 0/80, token requests 0")
    assert when("workers started 0/2") < when("workers started 2/2")
    assert when("workers started 2/2, calls made 80/80, token requests 1") < when("OK: 80/80")
    # the final screen: heading, one summary, no progress line left over
    screen = [line for line in _screen(raw) if line]
    assert screen[0].startswith("ppauth demo: 2 processes x 40 API calls"), screen
    assert screen[-1].startswith("OK: 80/80 calls, 1 token request, in "), screen
    assert not any("workers started" in line for line in screen), screen
    assert sum(line.startswith(("OK:", "FAILED:")) for line in screen) == 1
    assert list(demo_tmp.iterdir()) == []


def test_demo_help_is_plain_text():
    out = ok(ppauth("demo", "--help"))
    assert "``" not in out and ":mod:" not in out and ":class:" not in out
    assert "ppauth demo: the main job in one command" in out
    assert "--json" in out and "and only that" in out


# -- emulator -------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_emulator_runs_until_a_signal(sig):
    proc = subprocess.Popen(
        [sys.executable, "-m", "requests_ppauth.cli", "emulator", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        env = info["environment"]
        resp = requests.get(
            f"{env['PPAUTH_AUTHORITY_HOST']}/{env['PPAUTH_TENANT_ID']}/v2.0/.well-known/"
            "openid-configuration",
            verify=info["ca_bundle"],
            timeout=30,
        )
        assert resp.status_code == 200
        assert info["sample"]["client_secret"] == env["PPAUTH_CLIENT_SECRET"]
        # a throwaway token cache: following the exports never fills the real one
        assert os.path.isdir(env["PPAUTH_CACHE_DIR"])
        assert "ppauth-emulator-cache-" in env["PPAUTH_CACHE_DIR"]
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
        assert "emulator stopped" in proc.stderr.read()
        assert not os.path.exists(info["ca_bundle"])  # cleaned up on the way out
        assert not os.path.exists(env["PPAUTH_CACHE_DIR"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_emulator_text_output_then_the_environment_it_prints_works(ppauth_env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "requests_ppauth.cli", "emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "Ctrl-C to stop.":
            lines.append(proc.stdout.readline().rstrip("\n"))
        text = "\n".join(lines)
        assert "ca_bundle" in text and "admin_password" in text
        export = next(line for line in lines if line.strip().startswith("export "))
        for assignment in export.split()[1:]:
            name, _, value = assignment.partition("=")
            ppauth_env.set(**{name: value.strip("'")})
        ok(ppauth("token"))
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


# -- register-app -------------------------------------------------------------------------------


@pytest.fixture
def admin(ppauth_emulator, ppauth_env):
    """PPAUTH_* for the emulator's tenant admin, through its public client app."""
    emu = ppauth_emulator
    ppauth_env.use_emulator(emu, "password")
    ppauth_env.set(
        PPAUTH_USERNAME=emu.sample.admin_username, PPAUTH_PASSWORD=emu.sample.admin_password
    )
    return emu


def test_register_list_remove(admin):
    emu, client = admin, admin.sample.client_id
    api = ["--api-url", emu.api_url]

    out = ok(ppauth("register-app", "--client-id", client, *api))
    assert f"registered {client}" in out and emu.sample.tenant_id in out
    listed = json.loads(ok(ppauth("register-app", "--list", "--json", *api)))
    assert [a["applicationId"] for a in listed["value"]] == [client]
    assert f"1 app registered\n  {client}" in ok(ppauth("register-app", "--list", *api))
    assert "removed" in ok(ppauth("register-app", "--remove", "--client-id", client, *api))
    assert json.loads(ok(ppauth("register-app", "--list", "--json", *api)))["value"] == []
    assert emu.count("token") == 1  # one admin sign-in, then the cache


def test_register_app_needs_an_admin_user(admin, ppauth_env):
    emu = admin
    ppauth_env.set(PPAUTH_USERNAME=emu.sample.username, PPAUTH_PASSWORD=emu.sample.password)
    line, hint = failed(
        ppauth("register-app", "--client-id", emu.sample.client_id, "--api-url", emu.api_url),
        secrets=(emu.sample.password,),
    )
    assert "HTTP 403" in line and "administrator" in hint

    ppauth_env.use_emulator(emu, "secret")
    ppauth_env.set(PPAUTH_USERNAME=None, PPAUTH_PASSWORD=None)
    line, hint = failed(
        ppauth("register-app", "--client-id", emu.sample.client_id, "--api-url", emu.api_url)
    )
    assert "needs a tenant administrator's user sign-in" in line and "client secret" in line
    assert emu.count("token") == 1  # the service principal was refused before signing in


def test_register_app_usage():
    failed(ppauth("register-app"), 2)
    failed(ppauth("register-app", "--client-id", "not-a-guid"), 2)
