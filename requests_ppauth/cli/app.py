"""The ``ppauth`` parser, its global options, plugin commands, and the failure contract.

Exit status: 0 ok, 1 failure, 2 usage. A failure is one line on stderr and a hint
line, never a traceback unless ``--verbose``. Global options work before and after
the command (``ppauth --profile p token`` and ``ppauth token --profile p``).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, NoReturn

from requests_ppauth.cli import (
    cache_cmds,
    demo,
    doctor,
    emulator_cmd,
    login_cmds,
    logs,
    profile_cmds,
    register_app,
    request_cmd,
    sources_cmd,
    token_cmds,
)
from requests_ppauth.cli.failures import CLIError, describe, one_line
from requests_ppauth.clouds import CLOUDS, get_cloud

COMMANDS = (
    token_cmds,
    login_cmds,
    request_cmd,
    sources_cmd,
    profile_cmds,
    cache_cmds,
    doctor,
    register_app,
    emulator_cmd,
    demo,
)
EPILOG = """\
Start here: `ppauth demo` runs 8 processes x 50 API calls against the built-in emulator
and shows that they share one token. `ppauth doctor` checks a real setup.
Credentials come from PPAUTH_* / AZURE_* variables or the config file (PPAUTH_CONFIG);
`ppauth sources` shows which source answers and why the others passed.
A person signs in once with `ppauth login --device-code`; `ppauth logout` signs out."""


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line plus a hint (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error the way every other failure is reported."""
        sys.stderr.write(f"{self.prog}: error: {message}\nhint: run `{self.prog} --help`\n")
        sys.exit(2)


def _host_scope(text: str) -> tuple[str, str]:
    host, sep, scope = text.partition("=")
    if not sep or not host.strip() or not scope.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST=SCOPE (e.g. 127.0.0.1:8443=https://api.powerplatform.com/.default)"
        )
    return host.strip().lower(), scope.strip()


def _cloud(text: str) -> str:
    try:
        return get_cloud(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _authority_host(text: str) -> str:
    from requests_ppauth.errors import ConfigurationError
    from requests_ppauth.tokens import normalise_authority_host

    try:
        return normalise_authority_host(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def global_options(suppress: bool) -> Parser:
    """The options every command takes; ``suppress`` for the copy commands inherit, so a
    value given before the command is not reset by the command's own default."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser = Parser(add_help=False)
    g = parser.add_argument_group("global options")
    g.add_argument(
        "--profile", default=default(None), help="profile (default: PPAUTH_PROFILE or 'default')"
    )
    g.add_argument(
        "--cloud",
        type=_cloud,
        default=default(None),
        help=f"{', '.join(CLOUDS)} (default: the profile's, else public)",
    )
    g.add_argument(
        "--authority-host",
        type=_authority_host,
        default=default(None),
        metavar="URL",
        help="Entra ID host, e.g. https://login.microsoftonline.us",
    )
    g.add_argument(
        "--ca-bundle",
        default=default(None),
        metavar="FILE",
        help="CA bundle to trust (default: the profile's, else PPAUTH_CA_BUNDLE)",
    )
    g.add_argument(
        "--host-scope",
        action="append",
        type=_host_scope,
        default=default(None),
        metavar="HOST=SCOPE",
        help="send tokens for SCOPE to HOST[:PORT] too (repeatable)",
    )
    g.add_argument(
        "--allow-host",
        action="append",
        default=default(None),
        metavar="HOST",
        help="only these hosts (and --host-scope ones) may get a token (repeatable)",
    )
    g.add_argument(
        "--cache",
        default=default(None),
        metavar="BACKEND|DIR",
        help="token cache: file, memory, a plugin's backend, or a directory "
        "(default: PPAUTH_CACHE, else the profile's cache, else file)",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="DEBUG logs on stderr (secrets redacted) and tracebacks",
    )
    return parser


def build_parser() -> Parser:
    """The whole command line, plugin commands included."""
    parser = Parser(
        prog="ppauth",
        description="Entra ID tokens for Power Platform APIs, from the command line.",
        epilog=EPILOG,
        parents=[global_options(suppress=False)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", required=True
    )
    parents: list[argparse.ArgumentParser] = [global_options(suppress=True)]
    for module in COMMANDS:
        module.add(subparsers, parents)
    add_plugin_commands(subparsers)
    return parser


def add_plugin_commands(subparsers: Any) -> None:
    """Let plugins add commands; a broken plugin costs its commands, not ``ppauth``."""
    from requests_ppauth.plugins import get_plugins

    try:
        adders = get_plugins().command_adders()
    except Exception as exc:  # a plugin that fails to load must not take down --help
        logs.warn(f"plugin commands are unavailable: {describe(exc)[0]}")
        return
    for add_commands in adders:
        try:
            add_commands(subparsers)
        except Exception as exc:  # same: isolate each plugin's commands
            owner = getattr(add_commands, "__module__", None) or repr(add_commands)
            logs.warn(f"could not add the commands of plugin {owner}: {one_line(str(exc))}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("requests-ppauth")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command, map failures to the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.verbose)
    handler = getattr(args, "func", None)
    if handler is None:  # a plugin command that forgot set_defaults(func=...)
        parser.error(f"command {args.command!r} has no handler (its plugin sets no func)")
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("ppauth: interrupted\n")
        return 130
    except BrokenPipeError:
        # the reader went away (`ppauth cache list | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        if args.verbose:
            sys.stderr.write(logs.redact("".join(traceback.format_exception(exc))))
        line, hint = describe(exc)
        sys.stderr.write(f"ppauth: error: {logs.redact(line)}\nhint: {logs.redact(hint)}\n")
        return exc.status if isinstance(exc, CLIError) else 1
