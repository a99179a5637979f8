"""Storing secrets: ``python -m requests_ppauth_keyring set|delete|get-status``.

::

    python -m requests_ppauth_keyring set PROFILE FIELD [--service NAME]
    python -m requests_ppauth_keyring set keyring:NAME            # a reference's entry
    python -m requests_ppauth_keyring delete PROFILE FIELD
    python -m requests_ppauth_keyring get-status PROFILE FIELD

FIELD is ``client_secret``, ``certificate_password`` or ``password``. ``set`` reads the
secret from standard input when it is not a terminal (``printf %s "$SECRET" | ...``; one
trailing newline is dropped), otherwise from a prompt that does not echo, asked twice.
Never from the command line: arguments end up in shell history and ``ps``. No command
prints a secret. Exit status: 0 done / stored, 1 nothing stored (``delete``,
``get-status``), 2 usage error, 3 the keyring cannot be used.

:func:`register_cli` mounts the same commands under another argparse program, as
``ppauth keyring ...``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from requests_ppauth import PPAuthError
from requests_ppauth_keyring import _store
from requests_ppauth_keyring._resolver import SCHEME, parse_reference

if TYPE_CHECKING:
    # what ArgumentParser.add_subparsers() returns; typeshed's name for it is private
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_KEYRING = 0, 1, 2, 3


class UsageError(PPAuthError, ValueError):
    """The command line names no valid keyring entry (shown with exit status 2)."""


def register_cli(subparsers: SubParsers) -> None:
    """Add a ``keyring`` command (``set``, ``delete``, ``get-status``) to ``subparsers``.

    ``subparsers`` is what ``ArgumentParser.add_subparsers()`` returned; the core's
    ``ppauth`` command calls this to offer ``ppauth keyring set PROFILE FIELD``. Each
    leaf parser gets ``set_defaults(func=handler)``: ``handler(args)`` returns the exit
    status (0 done, 1 nothing stored) and raises :class:`requests_ppauth.PPAuthError`
    (``KeyringBackendError``, ``UsageError``) when it cannot do its work. The handlers
    read secrets from standard input or a no-echo prompt, never from ``argv``.
    """
    parser = subparsers.add_parser(
        "keyring",
        help="store profile secrets in the OS keyring",
        description="Store requests-ppauth profile secrets in the OS keyring. Values are "
        "read from stdin or a no-echo prompt, never from the command line.",
    )
    _add_commands(parser.add_subparsers(dest="keyring_command", required=True, metavar="COMMAND"))


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m requests_ppauth_keyring``."""
    parser = argparse.ArgumentParser(
        prog=_store.CLI,
        description="Store requests-ppauth secrets in the OS keyring (never from argv).",
    )
    _add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(
    argv: Sequence[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run the command line; return the exit status. Errors are one line on stderr."""
    args = build_parser().parse_args(argv)
    args.stdin = stdin or sys.stdin
    args.stdout = stdout or sys.stdout
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except _store.KeyringBackendError as exc:
        print(f"{_store.CLI}: error: {exc}", file=sys.stderr)
        return EXIT_KEYRING
    except (PPAuthError, ValueError) as exc:
        print(f"{_store.CLI}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _add_commands(commands: SubParsers) -> None:
    def target(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "profile", metavar="PROFILE", help="profile name, or a keyring:NAME reference"
        )
        parser.add_argument(
            "field",
            metavar="FIELD",
            nargs="?",
            help=f"one of {', '.join(_store.FIELDS)} (omit for a keyring: reference)",
        )
        parser.add_argument(
            "--service",
            default=None,
            help=f"keyring service (default {_store.SERVICE}); must match the profile's "
            "[profiles.<name>.keyring] service",
        )

    store = commands.add_parser(
        "set", help="store a secret read from stdin or a no-echo prompt (never from argv)"
    )
    target(store)
    store.set_defaults(func=_set)
    delete = commands.add_parser("delete", help="delete a stored secret")
    target(delete)
    delete.set_defaults(func=_delete)
    status = commands.add_parser(
        "get-status", help="say whether a secret is stored (never shows it)"
    )
    target(status)
    status.set_defaults(func=_status)


def _entry(args: argparse.Namespace) -> tuple[str, str, str]:
    """``(service, username, label)`` of the keyring entry the arguments name."""
    profile: str = args.profile
    field: str | None = args.field
    if field is None:
        if not profile.lower().startswith(SCHEME + ":"):
            raise UsageError(
                f"name a field ({', '.join(_store.FIELDS)}) after the profile, or give a "
                "keyring:NAME reference"
            )
        if args.service is not None:
            raise UsageError("a keyring: reference names its own service (keyring:SERVICE/NAME)")
        try:
            service, username = parse_reference(profile)
        except PPAuthError as exc:
            raise UsageError(str(exc)) from None
        return service, username, profile
    try:
        _store.check_field(field)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    service = args.service if args.service is not None else _store.SERVICE
    if not service:
        raise UsageError("--service must not be empty")
    return service, _store.profile_username(profile, field), f"{field} of profile {profile!r}"


def _stdin(args: argparse.Namespace) -> TextIO:
    # main() passes its streams; a host such as `ppauth` leaves them unset
    stream: TextIO = getattr(args, "stdin", None) or sys.stdin
    return stream


def _print(args: argparse.Namespace, line: str) -> None:
    print(line, file=getattr(args, "stdout", None) or sys.stdout)


def _where(service: str, username: str) -> str:
    return f"service {service!r}, username {username!r}"


def _read_secret(args: argparse.Namespace, label: str) -> str:
    """The secret from stdin (not a terminal) or a twice-asked no-echo prompt."""
    stdin = _stdin(args)
    if stdin.isatty():
        first = getpass.getpass(f"{label} (input hidden): ")
        if first != getpass.getpass("again, to confirm: "):
            raise UsageError("the two entries differ; nothing stored")
        value = first
    else:
        value = stdin.read()
        # `echo secret |` adds one newline; a secret never ends with one
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise UsageError("no secret given (empty input); nothing stored")
    return value


def _set(args: argparse.Namespace) -> int:
    service, username, label = _entry(args)
    value = _read_secret(args, label)
    _store.put(service, username, value)
    _print(args, f"stored {label} in the keyring ({_where(service, username)})")
    return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    service, username, label = _entry(args)
    if _store.remove(service, username):
        _print(args, f"deleted {label} from the keyring ({_where(service, username)})")
        return EXIT_OK
    _print(args, f"nothing stored for {label} ({_where(service, username)})")
    return EXIT_MISSING


def _status(args: argparse.Namespace) -> int:
    service, username, label = _entry(args)
    stored = _store.get(service, username) is not None
    backend = _store.describe(_store.backend())
    _print(
        args,
        f"{label}: {'stored' if stored else 'not stored'} ({_where(service, username)}; "
        f"backend {backend})",
    )
    return EXIT_OK if stored else EXIT_MISSING
