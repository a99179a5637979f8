"""The command line: ``python -m requests_ppauth_keyring`` and ``register_cli``.

Secrets come from stdin or a no-echo prompt, never from argv, and no output shows them.
Run in-process against keyrings.alt's file backend (``main()`` takes its streams), plus
one run through a real pseudo-terminal to prove the prompt does not echo.
"""

from __future__ import annotations

import argparse
import io
import os
import pty
import select
import sys
import time
from typing import Any

import keyring
import pytest
from requests_ppauth_keyring import SERVICE, has_secret, main, register_cli, set_secret
from requests_ppauth_keyring._cli import UsageError

from requests_ppauth import PPAuthError
from requests_ppauth.testing.pytest_plugin import PPAuthEnv

SECRET = "cli-s3cret-value-7f3a"


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()
    status = main(argv, stdin=io.StringIO(stdin), stdout=out)
    return status, out.getvalue()


@pytest.fixture(autouse=True)
def _file_keyring(file_keyring: Any) -> Any:
    return file_keyring


def test_set_reads_stdin_and_prints_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(["set", "prod", "client_secret"], stdin=SECRET + "\r\n")
    assert status == 0
    assert out == (
        "stored client_secret of profile 'prod' in the keyring "
        "(service 'requests-ppauth', username 'prod:client_secret')\n"
    )
    assert keyring.get_password(SERVICE, "prod:client_secret") == SECRET  # CRLF dropped
    captured = capsys.readouterr()
    assert SECRET not in out + captured.out + captured.err


def test_get_status_and_delete() -> None:
    assert run(["get-status", "prod", "password"])[0] == 1
    set_secret("prod", "password", SECRET)
    status, out = run(["get-status", "prod", "password"])
    assert status == 0
    assert out.startswith("password of profile 'prod': stored (service 'requests-ppauth'")
    assert "backend keyrings.alt.file.PlaintextKeyring" in out
    assert SECRET not in out
    assert run(["delete", "prod", "password"]) == (
        0,
        "deleted password of profile 'prod' from the keyring "
        "(service 'requests-ppauth', username 'prod:password')\n",
    )
    assert not has_secret("prod", "password")
    assert run(["delete", "prod", "password"])[0] == 1


def test_service_option() -> None:
    assert run(["set", "prod", "client_secret", "--service", "team"], stdin=SECRET)[0] == 0
    assert keyring.get_password("team", "prod:client_secret") == SECRET
    assert not has_secret("prod", "client_secret")


def test_reference_form() -> None:
    assert run(["set", "keyring:corp/app-1"], stdin=SECRET)[0] == 0
    assert keyring.get_password("corp", "app-1") == SECRET
    assert run(["set", "keyring:app-2"], stdin=SECRET)[0] == 0
    assert keyring.get_password(SERVICE, "app-2") == SECRET
    assert run(["get-status", "keyring:app-2"])[0] == 0


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["set", "prod", "client_secret"], "", "no secret given"),
        (["set", "prod", "client_secret"], "\n", "no secret given"),
        (["set", "prod", "secret"], SECRET, "unknown secret field 'secret'"),
        (["set", "prod"], SECRET, "name a field"),
        (["set", "keyring:x", "--service", "y"], SECRET, "names its own service"),
        (["set", "keyring:"], SECRET, "malformed keyring reference"),
        (["set", "prod", "client_secret", "--service", ""], SECRET, "--service"),
    ],
)
def test_usage_errors(
    argv: list[str], stdin: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv, stdin=stdin)[0] == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert SECRET not in err


def test_the_secret_is_never_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(["set", "prod", "client_secret", SECRET])
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
    assert not has_secret("prod", "client_secret")


def test_no_backend(no_keyring: Any, capsys: pytest.CaptureFixture[str]) -> None:
    keyring.set_keyring(no_keyring)
    assert run(["set", "prod", "client_secret"], stdin=SECRET)[0] == 3
    err = capsys.readouterr().err
    assert "no usable keyring backend" in err
    assert "pip install keyrings.alt" in err
    assert SECRET not in err


def test_register_cli_mounts_under_another_program(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `ppauth` will do: its own parser, `keyring` among its subcommands."""
    parser = argparse.ArgumentParser(prog="ppauth")
    register_cli(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))
    args = parser.parse_args(["keyring", "set", "prod", "client_secret"])
    assert args.func(args) == 0
    assert has_secret("prod", "client_secret")
    args = parser.parse_args(["keyring", "get-status", "prod", "client_secret"])
    assert args.func(args) == 0
    args = parser.parse_args(["keyring", "set", "prod"])  # failures raise PPAuthError
    with pytest.raises(UsageError):
        args.func(args)
    assert issubclass(UsageError, PPAuthError)
    out = capsys.readouterr()
    assert "stored client_secret of profile 'prod'" in out.out
    assert SECRET not in out.out + out.err
    with pytest.raises(SystemExit):
        parser.parse_args(["keyring", "--help"])
    assert "get-status" in capsys.readouterr().out


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            pytest.fail(f"no {marker!r} from the command; it printed {bytes(seen)!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            pytest.fail(f"the command ended before {marker!r}; it printed {bytes(seen)!r}")
        seen += chunk


def test_prompt_on_a_terminal_does_not_echo(ppauth_env: PPAuthEnv, file_keyring: Any) -> None:
    """A real pseudo-terminal: getpass turns echo off, so the secret never appears."""
    ppauth_env.set(PYTHON_KEYRING_BACKEND=file_keyring.env_name)
    argv = [sys.executable, "-m", "requests_ppauth_keyring", "set", "tty", "client_secret"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module
        finally:
            os._exit(127)
    seen = bytearray()
    try:
        _read_until(fd, b"(input hidden): ", seen)
        os.write(fd, SECRET.encode() + b"\n")
        _read_until(fd, b"confirm: ", seen)
        os.write(fd, SECRET.encode() + b"\n")
        _read_until(fd, b"username 'tty:client_secret')", seen)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, bytes(seen)
    assert SECRET.encode() not in seen
    assert keyring.get_password(SERVICE, "tty:client_secret") == SECRET
