"""``ppauth token`` and ``ppauth whoami``.

``token`` is the one command that prints an access token, because that is what it
is asked for (like ``az account get-access-token``); ``whoami`` decodes the same
token and shows who it stands for, never the token itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from requests_ppauth.auth import PowerPlatformAuth
from requests_ppauth.cli import common
from requests_ppauth.cli.failures import CLIError
from requests_ppauth.tokens import AccessToken


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``token`` and ``whoami``."""
    p = subparsers.add_parser(
        "token",
        parents=parents,
        help="print an access token (for scripts)",
        description=common.plain(
            "Print an access token for a scope: the token alone on stdout, or JSON "
            "with its expiry (--json). Default scope: the profile's scope, else the Power "
            "Platform API's (https://api.powerplatform.com/.default in the public cloud)."
        ),
    )
    _scope_options(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: accessToken, expiresOn, expires_on, scope, tenant",
    )
    p.set_defaults(func=run_token)

    p = subparsers.add_parser(
        "whoami",
        parents=parents,
        help="who the current token stands for (decoded claims, never the token)",
        description=common.plain(
            "Get a token as `ppauth token` would and show what it says: tenant, app, "
            "user, roles or scopes, expiry. The token itself is never printed."
        ),
    )
    _scope_options(p)
    p.add_argument("--json", action="store_true", help="print JSON, with every claim")
    p.set_defaults(func=run_whoami)


def _scope_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scope", help="the scope, e.g. https://service.powerapps.com//.default")
    group.add_argument(
        "--resource",
        metavar="URL",
        help="the scope that requests to this URL get (from the Power Platform host table "
        "and --host-scope)",
    )


def acquire(args: argparse.Namespace) -> tuple[PowerPlatformAuth, AccessToken]:
    """The auth object and a token for the scope the options select."""
    auth = common.build_auth(args)
    if args.scope:
        scope = args.scope
    elif args.resource:
        scope = auth.scope_for_url(common.check_url(args.resource))
    else:
        scope = common.default_scope(args, common.profile(args))
    return auth, auth.provider.get(scope)


def run_token(args: argparse.Namespace) -> int:
    """Print the token (or JSON)."""
    auth, token = acquire(args)
    if args.json:
        cred = auth.provider.credential
        common.print_json(
            {
                "accessToken": token.token,
                "expiresOn": common.iso(token.expires_on),
                "expires_on": int(token.expires_on),
                "scope": token.scope,
                "tenant": cred.tenant_id,
                "clientId": cred.client_id,
                "tokenType": "Bearer",
            }
        )
    else:
        sys.stdout.write(token.token + "\n")
    return 0


def run_whoami(args: argparse.Namespace) -> int:
    """Print the token's claims (never the token)."""
    auth, token = acquire(args)
    claims = common.jwt_claims(token.token)
    if claims is None:
        raise CLIError(
            f"the token for {token.scope} is not a JWT, so it says nothing about its holder",
            "that is normal for some resources; try --scope https://api.powerplatform.com/.default",
        )
    cred = auth.provider.credential
    summary = summarise(claims)
    summary["source"] = cred.source
    summary["credential"] = cred.kind
    summary["scope"] = token.scope
    if args.json:
        common.print_json({**summary, "claims": claims})
        return 0
    rows = [
        ("tenant", str(summary["tenant"])),
        (
            "app",
            str(summary["app"])
            + (f" ({claims['app_displayname']})" if "app_displayname" in claims else ""),
        ),
        ("user", str(summary["user"] or "none (an app-only token)")),
        ("object id", str(summary["objectId"])),
        ("roles", ", ".join(summary["roles"]) or "none"),
        ("scopes", ", ".join(summary["scopes"]) or "none"),
        ("audience", str(summary["audience"])),
        ("issuer", str(summary["issuer"])),
    ]
    if claims.get("exp"):
        rows.append(
            ("expires", f"{summary['expiresOn']} ({common.from_now(float(claims['exp']))})")
        )
    rows.append(("credential", f"{cred.kind} from source {cred.source}"))
    common.table(rows)
    return 0


def summarise(claims: dict[str, Any]) -> dict[str, Any]:
    """The claims people ask about, under readable names."""
    scp = claims.get("scp")
    roles = claims.get("roles") or []
    return {
        "tenant": claims.get("tid"),
        "app": claims.get("appid") or claims.get("azp"),
        "user": claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name"),
        "objectId": claims.get("oid"),
        "identityType": claims.get("idtyp") or ("user" if scp else "app"),
        "roles": [str(r) for r in roles] if isinstance(roles, list) else [str(roles)],
        "scopes": str(scp).split() if scp else [],
        "audience": claims.get("aud"),
        "issuer": claims.get("iss"),
        "issuedAt": common.iso(float(claims["iat"])) if claims.get("iat") else None,
        "expiresOn": common.iso(float(claims["exp"])) if claims.get("exp") else None,
        "expires_on": int(claims["exp"]) if claims.get("exp") else None,
        "secondsLeft": int(float(claims["exp"]) - time.time()) if claims.get("exp") else None,
    }
