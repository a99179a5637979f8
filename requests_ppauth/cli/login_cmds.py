"""``ppauth login --device-code`` and ``ppauth logout``: a person signs in once, and the
processes after use that sign-in.

``login`` shows a code and a URL on stderr, waits while the person signs in on any
device (multi-factor authentication included), and leaves the account and its refresh
token in the shared token cache: ``ppauth token``, ``ppauth request`` and
``PowerPlatformAuth`` in later processes then get tokens silently, for any scope the
app may ask for, until ``ppauth logout`` removes the sign-in.

The app and tenant: the profile's ``client_id`` and ``tenant_id``, else
``PPAUTH_CLIENT_ID`` and ``PPAUTH_TENANT_ID`` (the tenant defaults to
``organizations``). The profile should say ``device_code = true``, so that the other
commands pick the sign-in up.
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
from requests_ppauth.credentials import DeviceCode


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``login`` and ``logout``."""
    p = subparsers.add_parser(
        "login",
        parents=parents,
        help="sign in as a person with a device code (MFA works); later commands reuse it",
        description=common.plain(
            "Sign in as a person: show a code and a URL (on stderr), wait while you "
            "sign in on any device, and keep the account and its refresh token in the token "
            "cache, where `ppauth token` and PowerPlatformAuth find it. The app: the profile's "
            "client_id (a public client app), else PPAUTH_CLIENT_ID; the profile should say "
            "device_code = true."
        ),
    )
    p.add_argument(
        "--device-code",
        action="store_true",
        help="sign in on another device: show a code and a URL, wait for the sign-in",
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
    reads a ``device_code = true`` profile."""
    env = EnvironView()  # a frame that raises: its repr hides every value
    if selected.get("client_id"):
        client_id, tenant = str(selected.get("client_id")), selected.get("tenant_id")
    elif env.get("PPAUTH_CLIENT_ID"):
        client_id, tenant = env["PPAUTH_CLIENT_ID"], env.get("PPAUTH_TENANT_ID")
    else:
        raise CLIError(
            f"no app for a device code sign-in: profile {selected.name!r} has no client_id and "
            "PPAUTH_CLIENT_ID is not set",
            f"add client_id (an app with 'Allow public client flows' on) and device_code = "
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


def run_login(args: argparse.Namespace) -> int:
    """Sign in with a device code and report who signed in (never the token)."""
    if not args.device_code:
        raise UsageError(
            "ppauth login signs in with a device code: say --device-code",
            "run `ppauth login --device-code`",
        )
    selected = common.profile(args)
    cred = device_credential(selected, prompt=_show)
    auth = common.build_auth(args, credential=cred)
    scope = args.scope or common.default_scope(args, selected)
    token = auth.provider.sign_in(scope)
    claims = common.jwt_claims(token.token) or {}
    user = claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name")
    sys.stdout.write(
        f"signed in as {user or 'an account the token does not name'} "
        f"(profile {selected.name}, client {cred.client_id}); `ppauth logout` signs out\n"
    )
    if not selected.get("device_code"):
        sys.stderr.write(
            f"note: add device_code = true (and client_id = {cred.client_id!r}) to "
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
