"""``ppauth request METHOD URL``: call a Power Platform API with the auth (like ``az rest``).

The token goes only to hosts the auth allows (Power Platform hosts of the cloud, and
those named with ``--host-scope`` / ``--allow-host``); ``--all`` follows ``nextLink``
and ``@odata.nextLink`` under the same rule, and prints ``{"value": [every item]}``.

It uses :func:`requests_ppauth.session`: a GET, HEAD, PUT or DELETE answered 429 or
503 is resent after its ``Retry-After`` (``--retries``, ``--max-wait``), and each wait
is said on stderr, so a slow command is not mistaken for a hung one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from requests_ppauth.cli import common
from requests_ppauth.cli.failures import CLIError, UsageError, one_line
from requests_ppauth.retries import DEFAULT_MAX_WAIT, DEFAULT_RETRIES, Wait

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
MAX_PAGES = 10_000
_STATUS_HINTS = {
    400: "the API did not accept the request: check the body, the query and the api-version",
    401: "the API rejected the token: check the scope for this host (--scope, --host-scope) "
    "and that the app is registered with Power Platform (`ppauth register-app`)",
    403: "the credential is valid but not allowed to do this: check its roles and the "
    "environment's security settings",
    404: "check the URL, the api-version and the resource's name",
    429: "the API is throttling: wait and retry (or raise --max-wait / --retries)",
}


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``request``."""
    p = subparsers.add_parser(
        "request",
        parents=parents,
        help="call a Power Platform API and print the JSON (like az rest)",
        description=common.plain(
            "Send METHOD URL with the profile's token and print the response body. "
            "The token is only sent to Power Platform hosts of the cloud and to hosts named with "
            "--host-scope/--allow-host."
        ),
    )
    p.add_argument("method", type=_method, metavar="METHOD", help=", ".join(METHODS))
    p.add_argument("url", metavar="URL")
    p.add_argument(
        "--json",
        dest="body",
        metavar="DATA",
        help="JSON request body; @FILE reads it from a file, @- from stdin",
    )
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="an extra request header (repeatable)",
    )
    p.add_argument(
        "--all", action="store_true", help="follow nextLink / @odata.nextLink and merge 'value'"
    )
    p.add_argument("--scope", help="the scope for this URL, instead of the host table's")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument(
        "--retries",
        type=_count,
        default=DEFAULT_RETRIES,
        help="resends of a GET/HEAD/PUT/DELETE answered 429 or 503, after its Retry-After "
        f"(default {DEFAULT_RETRIES}; 0: none)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=DEFAULT_MAX_WAIT,
        metavar="SECONDS",
        help=f"total seconds to wait for those resends (default {DEFAULT_MAX_WAIT:.0f})",
    )
    p.set_defaults(func=run)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _said_wait(wait: Wait) -> None:
    why = "Retry-After" if wait.retry_after else "back-off"
    print(
        f"ppauth: {wait.method} {wait.host} answered HTTP {wait.status}; waiting "
        f"{wait.seconds:.1f} s ({why}) before retry {wait.attempt}",
        file=sys.stderr,
        flush=True,
    )


def _method(text: str) -> str:
    method = text.upper()
    if method not in METHODS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(METHODS)}")
    return method


def _body(data: str | None) -> Any:
    if data is None:
        return None
    if data.startswith("@"):
        source = data[1:]
        try:
            data = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}", "check the path") from None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise UsageError(f"--json is not valid JSON: {exc}", "quote it for the shell") from None


def _headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"header {item!r} is not NAME:VALUE", "e.g. -H 'Prefer: odata'")
        if name.strip().lower() == "authorization":
            raise UsageError(
                "-H Authorization would replace the token", "drop it: ppauth sets Authorization"
            )
        headers[name.strip()] = value.strip()
    return headers


def run(args: argparse.Namespace) -> int:
    """Send the request (and the next pages), print the body."""
    from requests_ppauth.retries import session as make_session

    url = common.check_url(args.url)
    body = _body(args.body)
    headers = _headers(args.header)
    if args.all and args.method != "GET":
        raise UsageError("--all follows paging links, which only GET has", "drop --all")
    selected = common.profile(args)
    verify = common.ca_bundle(args, selected)
    if args.max_wait < 0:
        raise UsageError("--max-wait must not be negative", "e.g. --max-wait 60")
    session = make_session(
        auth=common.build_auth(args, scope=args.scope),
        retries=args.retries,
        max_wait=args.max_wait,
        on_wait=_said_wait,
    )
    items: list[Any] = []
    seen: set[str] = set()
    while True:
        resp = session.request(
            args.method,
            url,
            json=body,
            headers=headers,
            verify=verify,  # per request: REQUESTS_CA_BUNDLE cannot override it (requests #3829)
            timeout=args.timeout,
        )
        if resp.status_code >= 400:
            raise http_error(args.method, url, resp)
        if not args.all:
            return _print_body(resp)
        page = _json(resp)
        if not isinstance(page, dict) or not isinstance(page.get("value"), list):
            if not items:
                return _print_body(resp)
            raise CLIError(f"page {url} has no 'value' list", "drop --all for this API")
        items.extend(page["value"])
        next_link = page.get("@odata.nextLink") or page.get("nextLink")
        if not next_link:
            break
        if next_link in seen or len(seen) >= MAX_PAGES:
            raise CLIError(f"paging does not end: {next_link} again", "drop --all")
        seen.add(next_link)
        url = common.check_url(str(next_link))
    common.print_json({"value": items})
    return 0


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _print_body(resp: Any) -> int:
    if not resp.content:
        return 0
    data = _json(resp)
    if data is not None:
        common.print_json(data)
    else:
        sys.stdout.write(resp.text + ("" if resp.text.endswith("\n") else "\n"))
    return 0


def http_error(method: str, url: str, resp: Any) -> CLIError:
    """The failure for an HTTP error response: the status and the API's own message."""
    data = _json(resp)
    detail = ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            detail = str(error.get("message") or error.get("code") or "")
        elif error:
            detail = str(data.get("error_description") or error)
    elif resp.text:
        detail = resp.text[:200]
    status = resp.status_code
    hint = _STATUS_HINTS.get(status) or (
        "the service failed: retry later" if status >= 500 else "see the API's documentation"
    )
    line = f"{method} {url} returned HTTP {status}"
    return CLIError(line + (f": {one_line(detail)}" if detail else ""), hint)
