"""``ppauth login`` and ``ppauth logout``: a person signs in once, and the processes
after use that sign-in.

``login`` opens the browser on this machine (authorization code with PKCE, as ``pac
auth create`` does) where one can open, and otherwise, or with ``--device-code``,
shows a code and a URL on stderr and waits while the person signs in on any device.
Multi-factor authentication works either way. The account and its refresh token stay
in the shared token cache: ``ppauth token``, ``ppauth request`` and
``PowerPlatformAuth`` in later processes then get tokens silently, for any scope the
app may ask for, until ``ppauth logout`` removes the sign-in.

The app and tenant: the profile's ``client_id`` and ``tenant_id``, else
``PPAUTH_CLIENT_ID`` and ``PPAUTH_TENANT_ID`` (the tenant defaults to
``organizations``). The profile should say ``interactive = true`` (or ``device_code =
true``), so that the other commands pick the sign-in up: both find the same account.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from requests_ppauth._redacted import EnvironView
from requests_ppauth.cli import common
from requests_ppauth.cli.failures import CLIError, UsageError
from requests_ppauth.config import Profile
from requests_ppauth.credentials import DeviceCode, InteractiveBrowser
from requests_ppauth.signin import can_open_browser


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``login`` and ``logout``."""
    p = subparsers.add_parser(
        "login",
        parents=parents,
        help="sign in as a person in the browser (or with a device code; MFA works); later "
        "commands reuse it",
        description=common.plain(
            "Sign in as a person: in this machine's browser where one can open, else (or with "
            "--device-code) with a code and a URL shown on stderr, entered on any device. The "
            "account and its refresh token stay in the token cache, where `ppauth token` and "
            "PowerPlatformAuth find them. The app: the profile's client_id (a public client "
            "app with the redirect URI http://localhost), else PPAUTH_CLIENT_ID; the profile "
            "should say interactive = true (or device_code = true)."
        ),
    )
    p.add_argument(
        "--device-code",
        action="store_true",
        help="sign in on another device: show a code and a URL, wait for the sign-in",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the browser sign-in (default 300)",
    )
    p.add_argument(
        "--scope",
        help="the scope to sign in for (default: the profile's scope, else the Power Platform "
        "API's); tokens for other scopes come later without signing in again",
    )
    p.set_defaults(func=run_login)

    p = subparsers.add_parser(
        "logout",
        parents=parents,
        help="remove the profile's signed-in accounts and their tokens from the token cache",
        description=common.plain(
            "Remove the accounts signed in with the profile's app (with the profile's "
            "username: only that one), their refresh tokens and the cached access tokens from the "
            "shared token cache. For a service principal's cached tokens, see `ppauth cache clear`."
        ),
    )
    p.set_defaults(func=run_logout)


def device_credential(selected: Profile, prompt: Callable[[str], None] | None = None) -> DeviceCode:
    """The profile's app as a device code credential: ``client_id`` and ``tenant_id`` from
    the profile, else both from ``PPAUTH_*`` (never one of each), as the ``file`` source
    reads a ``device_code = true`` or ``interactive = true`` profile."""
    env = EnvironView()  # a frame that raises: its repr hides every value
    if selected.get("client_id"):
        client_id, tenant = str(selected.get("client_id")), selected.get("tenant_id")
    elif env.get("PPAUTH_CLIENT_ID"):
        client_id, tenant = env["PPAUTH_CLIENT_ID"], env.get("PPAUTH_TENANT_ID")
    else:
        raise CLIError(
            f"no app to sign in with: profile {selected.name!r} has no client_id and "
            "PPAUTH_CLIENT_ID is not set",
            f"add client_id (an app with 'Allow public client flows' on) and interactive = "
            f"true to [profiles.{selected.name}] in {selected.path}, or set PPAUTH_CLIENT_ID",
        )
    return DeviceCode(
        tenant_id=str(tenant or "organizations"),
        client_id=client_id,
        authority_host=selected.get("authority_host"),
        username=selected.get("username"),
        prompt=prompt,
        source="login",
    )


def _show(message: str) -> None:
    """The device code instruction, for the person at the terminal (stderr: stdout is
    for scripts)."""
    sys.stderr.write(f"{message}\nWaiting for the sign-in (Ctrl+C cancels)...\n")
    sys.stderr.flush()


def browser_credential(
    selected: Profile, timeout: float, prompt: Callable[[str], None] | None = None
) -> InteractiveBrowser:
    """The profile's app as a browser sign-in (the same app and tenant as
    :func:`device_credential`; where no browser can open, it signs in with a device
    code, shown by ``prompt``)."""
    base = device_credential(selected)
    return InteractiveBrowser(
        tenant_id=base.tenant_id,
        client_id=base.client_id,
        authority_host=base.authority_host,
        username=base.username,
        timeout=timeout,
        prompt=prompt,
        source="login",
    )


def run_login(args: argparse.Namespace) -> int:
    """Sign in in the browser (or with a device code) and report who signed in (never
    the token)."""
    selected = common.profile(args)
    if not (0 < args.timeout <= 3600):
        raise UsageError(
            f"--timeout must be between 0 and 3600 seconds, not {args.timeout:g}",
            "say how long to wait for the browser sign-in, e.g. --timeout 300",
        )
    cred: DeviceCode | InteractiveBrowser
    if args.device_code:
        cred = device_credential(selected, prompt=_show)
    else:
        if can_open_browser():
            sys.stderr.write("Opening the browser to sign in (Ctrl+C cancels)...\n")
            sys.stderr.flush()
        cred = browser_credential(selected, args.timeout, prompt=_show)
    auth = common.build_auth(args, credential=cred)
    scope = args.scope or common.default_scope(args, selected)
    token = auth.provider.sign_in(scope)
    claims = common.jwt_claims(token.token) or {}
    user = claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name")
    sys.stdout.write(
        f"signed in as {user or 'an account the token does not name'} "
        f"(profile {selected.name}, client {cred.client_id}); `ppauth logout` signs out\n"
    )
    if not (selected.get("device_code") or selected.get("interactive")):
        sys.stderr.write(
            f"note: add interactive = true (and client_id = {cred.client_id!r}) to "
            f"[profiles.{selected.name}] in {selected.path}, so that `ppauth token` and "
            "PowerPlatformAuth use this sign-in\n"
        )
    return 0


def run_logout(args: argparse.Namespace) -> int:
    """Remove the profile's sign-ins from the shared cache."""
    selected = common.profile(args)
    cred = device_credential(selected)
    auth = common.build_auth(args, credential=cred)
    removed = auth.provider.sign_out()
    where = f"profile {selected.name}, client {cred.client_id}"
    if removed:
        sys.stdout.write(f"signed out {', '.join(removed)} ({where})\n")
    else:
        sys.stdout.write(f"no account is signed in ({where})\n")
    return 0
