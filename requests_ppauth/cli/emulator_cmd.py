"""``ppauth emulator``: the Entra ID / Power Platform / Key Vault emulator in the foreground.

Prints its URLs, the CA bundle to trust and the sample credentials (made up by the
emulator, so printing them is the point), plus the variables that point ``ppauth`` at
it, a throwaway ``PPAUTH_CACHE_DIR`` among them (removed when the emulator stops), so
following them never puts the emulator's tokens into your real cache; stops on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
import threading
from types import FrameType
from typing import Any

from requests_ppauth.cli.common import netloc, plain, reject_unused

PP_SCOPE = "https://api.powerplatform.com/.default"


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``emulator``."""
    p = subparsers.add_parser(
        "emulator",
        parents=parents,
        help="run the local Entra ID + Power Platform emulator until Ctrl-C",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print one JSON line (for scripts)")
    p.add_argument(
        "--token-lifetime", type=int, default=3600, metavar="SECONDS", help="default 3600"
    )
    p.add_argument(
        "--identity-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Entra ID on PORT (443, as root: for clients such as msal's "
        "username/password flow that drop the authority's port); default a free port",
    )
    p.set_defaults(func=run)


def environment(info: dict[str, Any], cache_dir: str) -> dict[str, str]:
    """``PPAUTH_*`` variables for the emulator's sample confidential app, with a token
    cache of its own (``cache_dir``)."""
    sample = info["sample"] or {}
    return {
        "PPAUTH_TENANT_ID": sample.get("tenant_id", ""),
        "PPAUTH_CLIENT_ID": sample.get("client_id", ""),
        "PPAUTH_CLIENT_SECRET": sample.get("client_secret", ""),
        "PPAUTH_AUTHORITY_HOST": info["authority_host"],
        "PPAUTH_CA_BUNDLE": info["ca_bundle"],
        "PPAUTH_CACHE_DIR": cache_dir,
    }


def run(args: argparse.Namespace) -> int:
    """Start, print, wait for a signal, stop."""
    reject_unused(args, "emulator", uses=("verbose",), why="it is its own identity provider")
    from requests_ppauth.testing import Emulator

    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with (
            Emulator(token_lifetime=args.token_lifetime, identity_port=args.identity_port) as emu,
            tempfile.TemporaryDirectory(prefix="ppauth-emulator-cache-") as cache_dir,
        ):
            info = emu.info()
            env = environment(info, cache_dir)
            if args.json:
                sys.stdout.write(json.dumps({**info, "environment": env}) + "\n")
            else:
                _print(info, env)
            sys.stdout.flush()
            while not done.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stderr.write("ppauth: emulator stopped\n")
    return 0


def _print(info: dict[str, Any], env: dict[str, str]) -> None:
    out = sys.stdout
    sample = dict(info.get("sample") or {})
    for name in ("authority_host", "api_url", "vault_url", "foreign_url", "admin_url", "ca_bundle"):
        out.write(f"{name:>18}  {info[name]}\n")
    out.write("\nsample credentials (made up by the emulator):\n")
    for name, v in sample.items():
        out.write(f"{name:>18}  {v}\n")
    api = info["api_url"]
    out.write("\npoint ppauth at it (another terminal):\n")
    out.write("  export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "\n")
    out.write(
        f"  ppauth request GET '{api}/environmentmanagement/environments?api-version=2024-10-01'"
        " --all "
        f"--host-scope {netloc(api)}={PP_SCOPE}\n"
    )
    out.write("\nCtrl-C to stop.\n")
