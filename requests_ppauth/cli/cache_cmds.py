"""``ppauth cache path|list|clear``: the on-disk token cache (``PPAUTH_CACHE_DIR``).

``list`` shows each token's key (authority, tenant, client, user, scope) and expiry,
read from the cache's own ``PPAuthToken`` entries field by field: a token or refresh
token is never printed. ``clear`` removes every token through the cache's own locked,
atomic commit, so processes using the cache at the same moment lose nothing else.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from requests_ppauth.cache import OUR_SECTION, Op, default_cache_dir
from requests_ppauth.cli import common
from requests_ppauth.file_cache import FileCache

_LISTED = ("scope", "client_id", "tenant", "user", "authority")


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``cache`` and its subcommands."""
    p = subparsers.add_parser(
        "cache",
        parents=parents,
        help="where the token cache is, what it holds, and clearing it",
        description="The token cache shared by every process of this user: "
        "PPAUTH_CACHE_DIR, else the platform's cache directory.",
    )
    sub = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    path = sub.add_parser("path", parents=parents, help="print the cache file's path")
    path.set_defaults(func=run_path)
    ls = sub.add_parser("list", parents=parents, help="cached tokens: keys and expiry only")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)
    clear = sub.add_parser("clear", parents=parents, help="remove every cached token")
    clear.set_defaults(func=run_clear)


def _cache() -> FileCache:
    return FileCache(default_cache_dir())


def run_path(args: argparse.Namespace) -> int:
    """Print the file's path."""
    sys.stdout.write(_cache().location + "\n")
    return 0


def entries(cache: FileCache, now: float) -> list[dict[str, Any]]:
    """Our token entries, without their secrets, soonest expiry first."""
    if not cache.path.exists():
        return []
    rows = []
    for entry in cache.read().get(OUR_SECTION, {}).values():
        if not isinstance(entry, dict):
            continue
        expires_on = float(entry.get("expires_on") or 0)
        rows.append(
            {
                **{k: entry.get(k) for k in _LISTED},
                "expiresOn": common.iso(expires_on),
                "expires_on": int(expires_on),
                "refreshOn": common.iso(float(entry.get("refresh_on") or 0)),
                "expired": expires_on <= now,
            }
        )
    return sorted(rows, key=lambda r: (r["expires_on"], str(r["scope"])))


def run_list(args: argparse.Namespace) -> int:
    """Print keys and expiry."""
    cache = _cache()
    now = time.time()
    rows = entries(cache, now)
    if args.json:
        common.print_json({"cache": cache.location, "tokens": rows})
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
    return 0


def run_clear(args: argparse.Namespace) -> int:
    """Remove every token (and msal's accounts and refresh tokens)."""
    cache = _cache()
    if not cache.path.exists():
        sys.stdout.write(f"{cache.location}: nothing to clear\n")
        return 0
    state = cache.read()
    ops = [
        Op(section, key)
        for section, items in state.items()
        # msal's sections and our tokens; the cache's own PPAuth* bookkeeping stays
        if (section == OUR_SECTION or not section.startswith("PPAuth")) and isinstance(items, dict)
        for key in items
    ]
    tokens = len(state.get(OUR_SECTION, {}))
    if ops:
        cache.apply(ops)
    sys.stdout.write(
        f"{cache.location}: removed {tokens} token{'s' if tokens != 1 else ''} "
        f"({len(ops)} entries in all)\n"
    )
    return 0
