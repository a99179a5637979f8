"""``--help`` renders plain: no reStructuredText markup reaches the terminal.

The commands' module docstrings are their descriptions; ``common.plain`` strips the
markup meant for Sphinx. Every parser is checked, the installed plugins' commands
included, and the real ``ppauth`` is run for the commands whose docstrings carry markup.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from requests_ppauth.cli.common import plain
from tests.test_cli import (
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    ok,
    ppauth,
)

# What reStructuredText looks like in a help text: ``literals``, :roles:`x`, `links`_,
# .. directives::, *emphasis* and **strong**, a paragraph ending in "::".
MARKUP = re.compile(
    r"``|:[a-z]+(?::[a-z]+)?:`|`_\b|`__|^\s*\.\. [a-z-]+::|(?<![\w*`])\*{1,2}[A-Za-z][\w' -]*"
    r"\*{1,2}(?![\w*])|\w::$",
    re.M,
)


def markup(text: str) -> list[str]:
    """The lines of ``text`` that hold reStructuredText markup."""
    return [line for line in text.splitlines() if MARKUP.search(line)]


@pytest.mark.parametrize(
    ("rst", "shown"),
    [
        ("Built on :mod:`argparse` on purpose", "Built on argparse on purpose"),
        (":class:`~requests_ppauth.PowerPlatformAuth` objects", "PowerPlatformAuth objects"),
        (":class:`requests_ppauth.PowerPlatformAuth`", "requests_ppauth.PowerPlatformAuth"),
        (":func:`the hook <requests_ppauth.hookspecs.x>`", "the hook"),
        (":py:meth:`Session.get`", "Session.get"),
        ("``PPAUTH_CONFIG`` points there", "PPAUTH_CONFIG points there"),
        ("run ``ppauth doctor`` first", "run `ppauth doctor` first"),  # a command stays quoted
        ("``PUT {api}/x\n?y=1`` with", "`PUT {api}/x\n?y=1` with"),  # across a line break
        ("the admin's *user* token", "the admin's user token"),
        ("**never** a token", "never a token"),
        ("see `the docs <https://example.org>`_.", "see the docs."),
        ("for example::\n\n    ppauth demo", "for example:\n\n    ppauth demo"),
        (".. note:: internal\nkept", "kept"),
        # what is not markup is left alone
        ("*.api.powerplatform.com and 8 x 50, a*b", "*.api.powerplatform.com and 8 x 50, a*b"),
        ("`ppauth demo` runs", "`ppauth demo` runs"),
        ("[profiles.<name>] tables", "[profiles.<name>] tables"),
    ],
)
def test_plain(rst, shown):
    assert plain(rst) == shown
    assert markup(plain(rst)) == []


def test_plain_of_nothing():
    assert plain(None) == "" and plain("") == ""


def _parsers(
    parser: argparse.ArgumentParser, prog: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


@pytest.fixture
def with_plugins(ppauth_env):
    """The installed plugins loaded, so their commands are checked too."""
    from requests_ppauth.plugins import reset_plugins

    ppauth_env.set(PPAUTH_DISABLE_PLUGINS=None)
    reset_plugins()
    yield
    reset_plugins()


def test_every_commands_help_is_plain(with_plugins):
    from requests_ppauth.cli.app import COMMANDS, build_parser

    parsers = dict(_parsers(build_parser(), "ppauth"))
    # the walk reaches every command (and the subcommands): it cannot pass by finding none
    assert len(parsers) >= len(COMMANDS) + 10, sorted(parsers)
    for name in ("ppauth demo", "ppauth doctor", "ppauth emulator", "ppauth register-app"):
        assert name in parsers, sorted(parsers)
    found = {prog: markup(p.format_help()) for prog, p in parsers.items()}
    assert {prog: lines for prog, lines in found.items() if lines} == {}


@pytest.mark.parametrize("command", ["demo", "doctor", "emulator", "register-app"])
def test_help_through_the_real_command(command):
    """The commands whose docstrings use markup, as a person runs them."""
    out = ok(ppauth(command, "--help"))
    assert out.startswith(f"usage: ppauth {command}"), out
    assert markup(out) == [], markup(out)


def test_top_level_help_is_plain():
    assert markup(ok(ppauth("--help"))) == []
