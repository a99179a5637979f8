"""The ``ppauth`` command: tokens, requests, profiles, the cache, diagnostics, the demo.

Built on :mod:`argparse` from the standard library, on purpose: the core install stays
``requests``, ``msal``, ``pluggy``, ``filelock`` and ``platformdirs``, with no CLI
framework pulled in for people who only put ``PowerPlatformAuth`` on a session.
argparse gives ``--help`` on every command, exit status 2 on usage errors, and
subparsers that plugins can add commands to (``ppauth_register_commands``). The
progress display is written by hand on stderr for the same reason.

Each command lives in a module named for it; :mod:`requests_ppauth.cli.app` builds
the parser and turns every failure into one line on stderr plus a hint. Importing
this package imports nothing else: the demo's worker processes import only what
they use.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``ppauth`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    from requests_ppauth.cli.app import main as run

    return run(argv)


__all__ = ["main"]
