"""``ppauth register-app``: register a service principal with Power Platform.

Power Platform refuses client-credential calls from an app until a tenant
administrator registers it: ``PUT {api}/providers/Microsoft.BusinessAppPlatform/
adminApplications/{client_id}?api-version=2020-10-01`` with the admin's *user* token
for the Power Apps service (``https://service.powerapps.com//.default``). ``GET``
lists the registered apps, ``DELETE`` removes one. So the profile used here signs in
a user (username and password through a public client app), not the app itself.
"""

from __future__ import annotations

import argparse
import sys
import uuid
import warnings
from typing import Any

from requests_ppauth.cli import common
from requests_ppauth.cli.failures import CLIError, UsageError
from requests_ppauth.cli.request_cmd import http_error
from requests_ppauth.credentials import UsernamePassword
from requests_ppauth.tokens import ROPCWarning

DEFAULT_API = "https://api.bap.microsoft.com"
PATH = "/providers/Microsoft.BusinessAppPlatform/adminApplications"
API_VERSION = "2020-10-01"
KINDS = {"secret": "client secret", "certificate": "client certificate"}


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``register-app``."""
    p = subparsers.add_parser(
        "register-app",
        parents=parents,
        help="register an app (service principal) with Power Platform",
        description=common.plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--client-id", type=_guid, help="the application (client) id to register")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list the registered apps instead")
    mode.add_argument("--remove", action="store_true", help="remove the registration instead")
    p.add_argument(
        "--api-url", default=DEFAULT_API, help=f"the BAP API origin (default {DEFAULT_API})"
    )
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=run)


def _guid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an application (client) id") from None


def run(args: argparse.Namespace) -> int:
    """PUT, GET or DELETE the registration with an admin user's token."""
    import requests

    if not args.list and not args.client_id:
        raise UsageError("--client-id is required (unless --list)", "add --client-id APP_ID")
    api = common.check_url(args.api_url).rstrip("/")
    selected = common.profile(args)
    scope = common.bap_scope(args, selected)
    auth = common.build_auth(args, hosts={common.netloc(api): scope})
    auth.scope_for_url(api)  # a host the auth refuses fails here, before any sign-in
    cred = auth.provider.credential
    if not isinstance(cred, UsernamePassword):
        raise CLIError(
            f"register-app needs a tenant administrator's user sign-in, but profile "
            f"{selected.name!r} has a {KINDS.get(cred.kind, cred.kind)} (source {cred.source})",
            "use a profile with username and password of an admin and a public client app "
            "(PPAUTH_CLIENT_ID, PPAUTH_USERNAME, PPAUTH_PASSWORD, or --profile)",
        )
    url = f"{api}{PATH}" + (f"/{args.client_id}" if not args.list else "")
    method = "GET" if args.list else "DELETE" if args.remove else "PUT"
    session = requests.Session()
    session.auth = auth
    with warnings.catch_warnings():
        # a user sign-in is what this API requires, so the ROPC warning says nothing new
        warnings.simplefilter("ignore", ROPCWarning)
        resp = session.request(
            method,
            url,
            params={"api-version": API_VERSION},
            verify=common.ca_bundle(args, selected),
            timeout=60,
        )
    if resp.status_code == 403:
        raise CLIError(
            f"{method} {url} returned HTTP 403: {cred.user} is not allowed to register apps",
            "sign in as a Global or Power Platform administrator",
        )
    if resp.status_code >= 400:
        raise http_error(method, url, resp)
    data = resp.json() if resp.content else {}
    if args.json:
        common.print_json(data)
    elif args.list:
        apps = data.get("value", []) if isinstance(data, dict) else []
        sys.stdout.write(f"{len(apps)} app{'s' if len(apps) != 1 else ''} registered\n")
        for app in apps:
            sys.stdout.write(f"  {app.get('applicationId')}\n")
    elif args.remove:
        sys.stdout.write(f"removed the registration of {args.client_id}\n")
    else:
        sys.stdout.write(
            f"registered {args.client_id} with Power Platform (tenant {data.get('tenantId')})\n"
        )
    return 0
