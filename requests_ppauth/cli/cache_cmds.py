"""``ppauth cache path|list|clear|keygen``: the token cache this profile uses (``--cache``,
``PPAUTH_CACHE``, the profile's ``cache``, else the file cache in ``PPAUTH_CACHE_DIR``),
whichever backend that is: a plugin's works here as the file cache does.

``list`` shows each access token's key (authority, tenant, client, user, scope) and
expiry, field by field: a token or refresh token is never printed; and each back-off
in force (no token is requested for that key until it ends: the identity provider
could not be reached). ``clear`` removes every entry (access tokens, back-offs and
msal's sign-ins) in one atomic batch of the backend, ending any back-off.
``keygen`` prints a new key for ``PPAUTH_CACHE_KEY`` (the user asked for it: the one
place a key is printed); ``path`` also says, on stderr, whether entries are sealed
and under which key ids (never the keys).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from requests_ppauth.cache import Entry, Op
from requests_ppauth.cache.keys import ACCESS_TOKEN_PREFIX, is_backoff
from requests_ppauth.cli import common

_LISTED = ("scope", "client_id", "tenant", "user", "authority")


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``cache`` and its subcommands."""
    p = subparsers.add_parser(
        "cache",
        parents=parents,
        help="where the token cache is, what it holds, and clearing it",
        description=common.plain(
            "The token cache shared by every process of this user: --cache, "
            "PPAUTH_CACHE or the profile's cache, else the file cache in PPAUTH_CACHE_DIR "
            "or the platform's cache directory."
        ),
    )
    sub = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    path = sub.add_parser("path", parents=parents, help="print where the cache is")
    path.add_argument("--json", action="store_true", help="print JSON")
    path.set_defaults(func=run_path)
    keygen = sub.add_parser(
        "keygen",
        parents=parents,
        help="print a new key for PPAUTH_CACHE_KEY (seals cached tokens)",
        description=common.plain(
            "Print a new random key (base64 of 32 bytes) for PPAUTH_CACHE_KEY: "
            "with it set, cached tokens are stored sealed (AES-256-GCM). To rotate, set "
            "PPAUTH_CACHE_KEY=<new>,<old> until the old key's entries have expired."
        ),
    )
    keygen.add_argument("--json", action="store_true", help="print JSON")
    keygen.set_defaults(func=run_keygen)
    ls = sub.add_parser("list", parents=parents, help="cached tokens: keys and expiry only")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)
    clear = sub.add_parser("clear", parents=parents, help="remove every cached token")
    clear.set_defaults(func=run_clear)


def sealing(backend: Any) -> tuple[bool | None, list[str]]:
    """Whether ``backend`` seals its entries (None: it does not say) and its key ids:
    a backend that seals exposes its :class:`~requests_ppauth.cache.seal.Sealer` as
    ``sealer`` (the file cache does; plugins may)."""
    if not hasattr(backend, "sealer"):
        return None, []
    sealer = backend.sealer
    return (sealer is not None, list(sealer.key_ids) if sealer is not None else [])


def run_path(args: argparse.Namespace) -> int:
    """Print the cache's location (and, on stderr, whether it is sealed)."""
    common.reject_unused(args, "cache path", uses=("profile", "cache", "verbose"))
    backend = common.cache_backend(args)
    sealed, key_ids = sealing(backend)
    if args.json:
        common.print_json({"cache": backend.location, "sealed": sealed, "key_ids": key_ids})
        return 0
    sys.stdout.write(backend.location + "\n")
    if sealed:
        sys.stderr.write(f"entries sealed (AES-256-GCM), key ids {', '.join(key_ids)}\n")
    elif sealed is False:
        sys.stderr.write(
            "entries not sealed: set PPAUTH_CACHE_KEY (`ppauth cache keygen` makes a key)\n"
        )
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    """Print a new cache key: output the user asked for."""
    common.reject_unused(args, "cache keygen", uses=("verbose",), why="a key is random")
    from requests_ppauth.cache.seal import Sealer, generate_key, parse_keys

    key = generate_key()
    key_id = Sealer(parse_keys(key, "the new key")).key_id
    if args.json:
        common.print_json({"key": key, "key_id": key_id})
    else:
        sys.stdout.write(key + "\n")
    return 0


def _in_slot(key: str, entry: Any) -> bool:
    """Whether ``key`` is an access token's slot: its token, or its back-off record."""
    return key.startswith(ACCESS_TOKEN_PREFIX) and isinstance(entry, dict)


def entries(state: Mapping[str, Entry], now: float) -> list[dict[str, Any]]:
    """The access tokens of ``state``, without their secrets, soonest expiry first."""
    rows = []
    for key, entry in state.items():
        if not _in_slot(key, entry) or is_backoff(entry):
            continue
        expires_on = float(entry.get("expires_on") or 0)
        authority = str(entry.get("authority") or "")
        rows.append(
            {
                **{k: entry.get(k) for k in _LISTED},
                # the authority is https://host/<tenant>; 0.1 entries also had "tenant"
                "tenant": entry.get("tenant") or authority.rsplit("/", 1)[-1] or None,
                "expiresOn": common.iso(expires_on),
                "expires_on": int(expires_on),
                "refreshOn": common.iso(float(entry.get("refresh_on") or 0)),
                "expired": expires_on <= now,
            }
        )
    return sorted(rows, key=lambda r: (r["expires_on"], str(r["scope"])))


def backoffs(state: Mapping[str, Entry], now: float) -> list[dict[str, Any]]:
    """The back-offs of ``state`` still in force: what they hold back and why."""
    rows = []
    for key, entry in state.items():
        if not _in_slot(key, entry) or not is_backoff(entry):
            continue
        until = entry.get("expires_on")
        if not isinstance(until, int | float) or until <= now:
            continue  # run out: the next request is made
        rows.append(
            {
                **{k: entry.get(k) for k in ("scope", "client_id", "user", "authority")},
                "until": common.iso(float(until)),
                "failures": entry.get("failures"),
                "error": entry.get("error"),
                "message": entry.get("message"),
            }
        )
    return sorted(rows, key=lambda r: (str(r["until"]), str(r["scope"])))


def run_list(args: argparse.Namespace) -> int:
    """Print keys and expiry."""
    cache = common.cache_backend(args)
    now = time.time()
    state = cache.read_all()
    rows = entries(state, now)
    held = backoffs(state, now)
    if args.json:
        common.print_json({"cache": cache.location, "tokens": rows, "backoffs": held})
        return 0
    sys.stdout.write(f"{cache.location}: {len(rows)} token{'s' if len(rows) != 1 else ''}\n")
    for r in rows:
        who = f"user {r['user']}" if r["user"] else "app-only"
        when = "expired " if r["expired"] else "expires "
        sys.stdout.write(
            f"  {r['scope']}\n    client {r['client_id']}, tenant {r['tenant']}, {who}\n"
            f"    {r['authority']}; {when}{r['expiresOn']} "
            f"({common.from_now(r['expires_on'], now)})\n"
        )
    for b in held:
        sys.stdout.write(
            f"  backing off: no token request for {b['scope']} (client {b['client_id']}) "
            f"until {b['until']}, after {b['failures']} failure(s): {b['error']}\n"
            "    (it ends by itself; `ppauth cache clear` ends it now, with every cached token)\n"
        )
    return 0


def run_clear(args: argparse.Namespace) -> int:
    """Remove every token (and msal's accounts and refresh tokens)."""
    cache = common.cache_backend(args)
    state = cache.read_all()
    if not state:
        sys.stdout.write(f"{cache.location}: nothing to clear\n")
        return 0
    tokens = sum(1 for k, v in state.items() if _in_slot(k, v) and not is_backoff(v))
    cache.apply([Op(key) for key in state])
    sys.stdout.write(
        f"{cache.location}: removed {tokens} token{'s' if tokens != 1 else ''} "
        f"({len(state)} entries in all)\n"
    )
    return 0
