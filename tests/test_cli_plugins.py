"""Plugins extending `ppauth`: commands (``ppauth_register_commands``) and secret stores.

This module is itself the plugin: the tests install it the way pip would, as a
``*.dist-info`` with an entry point in the ``requests_ppauth`` group on PYTHONPATH,
so the subprocess loads it through the real entry-point machinery.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from requests_ppauth import ConfigurationError, SecretReferenceError, SourceRequest, hookimpl
from tests.test_cli import (
    ROOT,
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    failed,
    ok,
    ppauth,
    third_party_plugins,
)

ENTRY_POINT = "cli_test"
STORE_VARIABLE = "PPAUTH_CLI_TEST_STORE"
BROKEN_VARIABLE = "PPAUTH_CLI_TEST_BROKEN"


# -- the plugin ------------------------------------------------------------------------------


def add_hello(subparsers: Any) -> None:
    """A command contributed by a plugin, like the keyring plugin's ``register_cli``."""
    p = subparsers.add_parser("hello", help="say hello (from the test plugin)")
    p.add_argument("--name", default="world")
    p.add_argument("--fail", action="store_true")
    p.set_defaults(func=_hello)


def _hello(args: argparse.Namespace) -> int:
    if args.fail:
        raise ConfigurationError("the hello plugin has no greeting configured: set HELLO_TEXT")
    print(f"hello, {args.name}")
    return 0


def add_conflicting(subparsers: Any) -> None:
    subparsers.add_parser("token", help="a second 'token' command: refused")


class FileSecretStore:
    """A secret store keeping secrets in a JSON file (a stand-in for an OS keyring)."""

    name = "teststore"
    schemes = ("teststore",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def claims(self, reference: str) -> bool:
        return reference.startswith("teststore:")

    def resolve(self, reference: str, request: SourceRequest) -> str:
        try:
            return self._load()[reference]
        except KeyError:
            raise SecretReferenceError(f"{reference} is not in {self.path}") from None

    def store(self, profile: str, key: str, secret: str) -> str:
        reference = f"teststore:{profile}/{key}"
        self.path.write_text(json.dumps({**self._load(), reference: secret}))
        return reference

    def delete(self, reference: str) -> None:
        data = self._load()
        data.pop(reference, None)
        self.path.write_text(json.dumps(data))


@hookimpl
def ppauth_register_commands(register: Callable[[Callable[[Any], None]], None]) -> None:
    register(add_hello)
    if os.environ.get(BROKEN_VARIABLE):
        register(add_conflicting)


@hookimpl
def ppauth_register_secret_resolvers(register: Callable[[Any], None]) -> None:
    if os.environ.get(STORE_VARIABLE):
        register(FileSecretStore(Path(os.environ[STORE_VARIABLE])))


# -- installing it -----------------------------------------------------------------------------


@pytest.fixture
def installed(tmp_path, ppauth_env):
    """This module as an installed plugin distribution, visible to subprocesses."""
    site = tmp_path / "site"
    dist = site / "ppauth_cli_test_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ppauth-cli-test-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[requests_ppauth]\n{ENTRY_POINT} = tests.test_cli_plugins\n"
    )
    path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    ppauth_env.set(PYTHONPATH=path.rstrip(os.pathsep))
    return site


def test_a_plugin_adds_a_command(installed):
    assert "hello" in ok(ppauth("--help"))
    assert ok(ppauth("hello", "--name", "plugin")) == "hello, plugin\n"
    assert "--name" in ok(ppauth("hello", "--help"))


def test_a_plugin_command_fails_like_the_built_in_ones(installed):
    line, hint = failed(ppauth("hello", "--fail"))
    assert line == "ppauth: error: the hello plugin has no greeting configured"
    assert hint == "hint: set HELLO_TEXT"


def test_a_conflicting_plugin_command_is_a_warning_not_a_broken_cli(installed, ppauth_env):
    ppauth_env.set(**{BROKEN_VARIABLE: "1"})
    proc = ppauth("hello")
    assert ok(proc) == "hello, world\n"
    assert "ppauth: warning: could not add the commands of plugin tests.test_cli_plugins" in (
        proc.stderr
    )
    assert "conflicting subparser: token" in proc.stderr


def test_a_blocked_plugin_adds_nothing(installed, ppauth_env):
    ppauth_env.set(
        PPAUTH_DISABLE_PLUGINS=",".join(filter(None, [third_party_plugins(), ENTRY_POINT]))
    )
    failed(ppauth("hello"), 2)


# -- secret stores ------------------------------------------------------------------------------


def test_profile_add_puts_the_secret_in_the_store(installed, ppauth_env, ppauth_emulator):
    store = ppauth_env.root / "store.json"
    ppauth_env.set(**{STORE_VARIABLE: str(store)})
    emu, sample = ppauth_emulator, ppauth_emulator.sample
    proc = ppauth(
        "profile",
        "add",
        "vaulted",
        "--tenant-id",
        sample.tenant_id,
        "--client-id",
        sample.client_id,
        "--client-secret",
        "--authority-host",
        emu.authority_host,
        "--ca-bundle",
        emu.ca_bundle,
        stdin=sample.client_secret + "\n",
    )

    assert "in secret store teststore" in ok(proc)
    config = ppauth_env.config_path.read_text()
    assert sample.client_secret not in config
    assert 'client_secret = "teststore:vaulted/client_secret"' in config
    assert stat.S_IMODE(ppauth_env.config_path.stat().st_mode) == 0o600
    assert json.loads(store.read_text()) == {
        "teststore:vaulted/client_secret": sample.client_secret
    }
    shown = json.loads(ok(ppauth("profile", "show", "vaulted", "--json")))
    assert shown["settings"]["client_secret"] == "teststore:vaulted/client_secret"

    token = ok(ppauth("token", "--profile", "vaulted")).strip()  # resolved through the store
    assert token.count(".") == 2 and emu.count("token") == 1

    assert "from the secret store" in ok(ppauth("profile", "remove", "vaulted"))
    assert json.loads(store.read_text()) == {}
