"""A person signing in in this machine's browser: authorization code with PKCE through
msal's loopback listener (``acquire_token_interactive``), as ``pac auth create`` and
azure-identity's ``InteractiveBrowserCredential`` do.

Where a browser can open is decided here, once, before msal is asked: msal itself
"opens" a browser that is not there (``webbrowser`` finds none), logs a warning and
then waits for the whole timeout. So a process with no display falls back to a device
code when a person is at a terminal, and a batch job (no terminal, no display) fails at
once with ``interaction_required``, saying what to run: it never blocks for minutes.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping
from typing import Any

from requests_ppauth.credentials import DeviceCode, InteractiveBrowser
from requests_ppauth.errors import TokenAcquisitionError

_SUCCESS_PAGE = (
    "<html><head><title>Signed in</title></head><body><h1>Signed in</h1>"
    "<p>requests-ppauth has the sign-in. You can close this tab and return to the "
    "terminal.</p></body></html>"
)
# msal fills $error and $error_description (escaped: it is an HTML template)
_ERROR_PAGE = (
    "<html><head><title>Sign-in failed</title></head><body><h1>Sign-in failed</h1>"
    "<p>$error: $error_description</p><p>Return to the terminal for what to do.</p>"
    "</body></html>"
)


def can_open_browser(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a browser can open here: any desktop on macOS and Windows; on Linux a
    display (``DISPLAY``, ``WAYLAND_DISPLAY``), ``BROWSER`` naming one, or WSL (msal
    opens the Windows browser). An SSH session without X forwarding has none."""
    env = os.environ if environ is None else environ
    if sys.platform in ("win32", "darwin"):
        return True
    if env.get("BROWSER") or env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return True
    return "microsoft" in platform.uname().release.lower()  # WSL


def signed_in(app: Any, username: str | None, scope: str, claims: str | None = None) -> Any:
    """A token from a signed-in account's refresh token, or ``None``.

    msal lists every account in the cache, other clients' too: the first one with a
    refresh token of this client that answers wins."""
    accounts = app.get_accounts(username=username) if username else app.get_accounts()
    for account in accounts:
        result = app.acquire_token_silent_with_error(
            [scope], account=account, **({"claims_challenge": claims} if claims else {})
        )
        if result and "access_token" in result:
            return dict(result)
    return None


def _show_url(prompt: Callable[[str], None] | None) -> Callable[[str], None]:
    """What msal calls when the browser did not open: the person opens the URL (it
    holds no secret: the PKCE challenge, state and nonce hash only)."""

    def show(uri: str) -> None:
        message = f"No browser opened. To sign in, open this address in a browser:\n{uri}"
        if prompt is not None:
            prompt(message)
        else:
            print(message, file=sys.stderr, flush=True)

    return show


def browser_flow(
    app: Any,
    cred: InteractiveBrowser,
    scope: str,
    *,
    silent: bool = True,
    claims: str | None = None,
    device_code: Callable[[DeviceCode], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A signed-in account's token (silently), else a browser sign-in where one can
    open, else (``device_code`` given and a person at a terminal) a device code
    sign-in, else :class:`TokenAcquisitionError` ``interaction_required``.

    ``silent=False`` skips the signed-in accounts: a new sign-in (``ppauth login``).
    ``claims`` (a CAE or Conditional Access challenge) goes to the silent attempt and
    to the browser's authorization request, so the new sign-in satisfies it."""
    if silent:
        result = signed_in(app, cred.username, scope, claims)
        if result is not None:
            return dict(result)
    if not can_open_browser():
        if device_code is not None and (cred.prompt is not None or sys.stderr.isatty()):
            return device_code(
                DeviceCode(
                    tenant_id=cred.tenant_id,
                    client_id=cred.client_id,
                    authority_host=cred.authority_host,
                    source=cred.source,
                    username=cred.username,
                    prompt=cred.prompt,
                )
            )
        raise TokenAcquisitionError(
            f"no signed-in account for client {cred.client_id} in the token cache, and no "
            "browser or terminal to sign in with (no display: DISPLAY, WAYLAND_DISPLAY and "
            "BROWSER are unset)",
            error="interaction_required",
            hint="sign in once with `ppauth login` on this machine (same profile and cache "
            "directory; it uses a device code where no browser opens), then this job is "
            "silent",
        )
    from msal.oauth2cli.oauth2 import BrowserInteractionTimeoutError

    try:
        result = app.acquire_token_interactive(
            [scope],
            login_hint=cred.username,
            claims_challenge=claims,
            timeout=cred.timeout,
            port=cred.port,
            prompt=None if cred.username else "select_account",
            success_template=_SUCCESS_PAGE,
            error_template=_ERROR_PAGE,
            auth_uri_callback=_show_url(cred.prompt),
        )
    except BrowserInteractionTimeoutError:
        raise TokenAcquisitionError(
            f"the browser sign-in did not finish within {cred.timeout:g} s",
            error="interaction_timeout",
            hint="run `ppauth login` again and finish the sign-in in the browser tab it opens "
            "(or `ppauth login --device-code` to sign in on another device)",
        ) from None
    except (OSError, ValueError) as exc:
        # msal turns a refused port (PermissionError) into a ValueError "Can't listen";
        # a port in use is an OSError from the bind
        if isinstance(exc, ValueError) and "listen" not in str(exc):
            raise
        raise TokenAcquisitionError(
            f"cannot listen on port {cred.port} of this machine for the browser's answer "
            f"({type(exc).__name__})",
            error="invalid_request",
            hint="leave port unset (any free port), or choose one not in use",
        ) from None
    return dict(result or {})
