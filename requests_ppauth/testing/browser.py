"""A scripted browser for the emulator's sign-in pages, so interactive sign-in runs unattended.

msal's ``acquire_token_interactive`` opens the authorization URL with the standard
library's :mod:`webbrowser`, which on Linux honours ``BROWSER``. Point ``BROWSER`` at
the script :func:`write_browser_script` writes and this module plays the person at
the browser: it fetches the URL, fills the emulator's forms (password, one-time
code, consent) and posts the final auto-submitting form to the app's loopback
listener, as a real browser's JavaScript would.

Usage::

    BROWSER=$(python -c 'from requests_ppauth.testing.browser import write_browser_script;
                         print(write_browser_script("some/dir"))')
    PPAUTH_TEST_BROWSER_USERNAME=alice@contoso.example PPAUTH_TEST_BROWSER_PASSWORD=...
    python -m requests_ppauth.testing.browser URL    # what webbrowser runs

Environment (read by the process doing the work, so each sign-in can differ even
though :mod:`webbrowser` caches ``BROWSER`` for the life of a process):

``PPAUTH_TEST_BROWSER_USERNAME``, ``PPAUTH_TEST_BROWSER_PASSWORD``
    The account to sign in with (both required).
``PPAUTH_TEST_BROWSER_MFA_CODE``
    The one-time code for users with MFA (the emulator expects
    ``requests_ppauth.testing._authorize.MFA_CODE``, ``123456``, by default).
``PPAUTH_TEST_BROWSER_CONSENT``
    ``accept`` (default) or ``cancel`` on the consent page.
``PPAUTH_TEST_BROWSER_LOG``
    A file to append one JSON object per line to, saying what the browser did (the
    authorization request's parameters, each page and step, what it delivered).
    Passwords, one-time codes and authorization codes are never written.
``PPAUTH_TEST_BROWSER_CA``
    The CA bundle to trust for the emulator (``emu.ca_bundle``); else
    ``REQUESTS_CA_BUNDLE``; else the system's.

``webbrowser`` waits for the browser command to exit, and msal's listener does not
answer until it has, so the command re-runs itself detached (a new session) and
exits 0 at once; the detached child does the work. ``--foreground URL`` does it in
the calling process instead (exit status 0 when a response reached the app).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

MODULE = "requests_ppauth.testing.browser"
ENV_USERNAME = "PPAUTH_TEST_BROWSER_USERNAME"
ENV_PASSWORD = "PPAUTH_TEST_BROWSER_PASSWORD"
ENV_MFA_CODE = "PPAUTH_TEST_BROWSER_MFA_CODE"
ENV_CONSENT = "PPAUTH_TEST_BROWSER_CONSENT"
ENV_LOG = "PPAUTH_TEST_BROWSER_LOG"
ENV_CA = "PPAUTH_TEST_BROWSER_CA"
DETACHED = "--detached"
FOREGROUND = "--foreground"
SCRIPT_NAME = "scripted-browser"
MAX_STEPS = 12  # password, MFA, consent and the final form fit easily
TIMEOUT = 15.0  # per request: the emulator answers in milliseconds
#: fields of an authorization request worth logging (none is a secret)
LOGGED_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "prompt",
    "login_hint",
    "code_challenge_method",
)


class BrowserError(RuntimeError):
    """The scripted browser was given no usable settings."""


@dataclass(frozen=True)
class Credentials:
    """What the person at the browser would type."""

    username: str
    password: str = field(repr=False)
    mfa_code: str | None = field(default=None, repr=False)
    consent: str = "accept"

    def __post_init__(self) -> None:
        if self.consent not in ("accept", "cancel"):
            raise BrowserError(f"{ENV_CONSENT} must be 'accept' or 'cancel', not {self.consent!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read the ``PPAUTH_TEST_BROWSER_*`` variables (see the module docstring)."""
        env = os.environ if environ is None else environ
        missing = [name for name in (ENV_USERNAME, ENV_PASSWORD) if not env.get(name)]
        if missing:
            raise BrowserError(
                f"set {' and '.join(missing)} to the account the scripted browser signs in as"
            )
        return cls(
            username=env[ENV_USERNAME],
            password=env[ENV_PASSWORD],
            mfa_code=env.get(ENV_MFA_CODE) or None,
            consent=(env.get(ENV_CONSENT) or "accept").strip().lower(),
        )


@dataclass
class Form:
    """One HTML form: where it goes, its fields and its submit buttons."""

    action: str
    method: str
    name: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Page:
    """What the browser made of a response."""

    url: str
    status: int
    forms: list[Form]
    error_code: int | None = None
    error_text: str = ""

    @property
    def step(self) -> str | None:
        """The sign-in step the first form answers (``password``, ``mfa``, ``consent``)."""
        return self.forms[0].fields.get("step") if self.forms else None


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.error_code: int | None = None
        self.error_text: list[str] = []
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                Form(
                    attr.get("action", ""), attr.get("method", "get").upper(), attr.get("name", "")
                )
            )
        elif tag == "input" and self.forms and attr.get("name"):
            if attr.get("type", "text").lower() == "submit":
                self.forms[-1].buttons.append((attr["name"], attr.get("value", "")))
            else:
                self.forms[-1].fields[attr["name"]] = attr.get("value", "")
        elif tag == "button" and self.forms and attr.get("name"):
            self.forms[-1].buttons.append((attr["name"], attr.get("value", "")))
        elif tag == "div" and attr.get("id") == "error":
            code = attr.get("data-aadsts", "")
            self.error_code = int(code) if code.isdigit() else None
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._in_error = False

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error_text.append(data)


def parse_page(url: str, status: int, text: str) -> Page:
    """The forms and the marked error (``<div id="error" data-aadsts=...>``) of a page."""
    parser = _Parser()
    parser.feed(text)
    parser.close()
    return Page(url, status, parser.forms, parser.error_code, "".join(parser.error_text).strip())


@dataclass
class Outcome:
    """How a sign-in ended.

    ``response`` is the authorization response meant for the app (``code``,
    ``state``, ``client_info`` or ``error``...); ``delivered`` says whether it was
    sent to the redirect URI, ``listener_status`` what the app answered.
    ``error_code`` is an AADSTS code the pages showed and the browser could not get
    past (a wrong password, an unknown app, a redirect URI not allowed).
    """

    response: dict[str, str] = field(default_factory=dict, repr=False)
    delivered: bool = False
    listener_status: int | None = None
    error_code: int | None = None
    error_text: str = ""
    steps: list[str] = field(default_factory=list)

    @property
    def code(self) -> str | None:
        """The authorization code, if the sign-in produced one."""
        return self.response.get("code")


class _Log:
    """JSON lines appended to ``PPAUTH_TEST_BROWSER_LOG`` (nothing secret goes in)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def __call__(self, event: str, **fields: Any) -> None:
        if not self.path:
            return
        line = json.dumps(
            {"time": round(time.time(), 3), "pid": os.getpid(), "event": event, **fields}
        )
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _summary(response: Mapping[str, str]) -> dict[str, Any]:
    """An authorization response as the log may show it: the code only as present."""
    shown: dict[str, Any] = {"fields": sorted(response)}
    for key in ("state", "error", "error_subcode", "error_description"):
        if key in response:
            shown[key] = response[key]
    return shown


def sign_in(
    url: str,
    credentials: Credentials,
    *,
    verify: str | bool = True,
    log_path: str | None = None,
    deliver: bool = True,
) -> Outcome:
    """Sign in at ``url`` (an authorization request) as ``credentials`` would.

    ``deliver=False`` stops before the response reaches the redirect URI and returns
    it (tests redeem the code themselves); otherwise it is POSTed (``form_post``) or
    fetched (``query``) at the redirect URI like a browser does.
    """
    log = _Log(log_path)
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    log(
        "authorize",
        url=url.split("?", 1)[0],
        params={k: query[k] for k in LOGGED_PARAMS if k in query},
        pkce="code_challenge" in query,
    )
    outcome = Outcome()
    with requests.Session() as session:
        # the CA given here, not REQUESTS_CA_BUNDLE, and no proxy for loopback
        session.trust_env = False
        session.verify = verify
        resp = session.get(url, allow_redirects=False, timeout=TIMEOUT)
        submitted: str | None = None
        for _ in range(MAX_STEPS):
            if resp.is_redirect:
                location = urljoin(resp.url, resp.headers["Location"])
                if _same_origin(location, url):
                    resp = session.get(location, allow_redirects=False, timeout=TIMEOUT)
                    continue
                parts = urlsplit(location)
                outcome.response = dict(parse_qsl(parts.query or parts.fragment))
                log(
                    "response",
                    mode="redirect",
                    to=location.split("?", 1)[0],
                    **_summary(outcome.response),
                )
                if deliver:
                    _deliver(outcome, log, "GET", location, None)
                return outcome
            page = parse_page(resp.url, resp.status_code, resp.text)
            step = page.step
            log("page", status=page.status, step=step, aadsts=page.error_code)
            if page.error_code is not None and (not page.forms or step == submitted):
                # an error page, or the step just submitted came back refused
                outcome.error_code, outcome.error_text = page.error_code, page.error_text
                log("stopped", aadsts=page.error_code)
                return outcome
            if not page.forms:
                outcome.error_text = f"no form on the page (HTTP {page.status})"
                log("stopped", reason=outcome.error_text)
                return outcome
            form = page.forms[0]
            data = dict(form.fields)
            if step == "password":
                data.update(username=credentials.username, password=credentials.password)
            elif step == "mfa":
                if credentials.mfa_code is None:
                    outcome.error_text = f"the account asks for a one-time code: set {ENV_MFA_CODE}"
                    log("stopped", reason=outcome.error_text)
                    return outcome
                data["otc"] = credentials.mfa_code
            elif step == "consent":
                data["consent"] = credentials.consent
            else:
                # the auto-submitting form (form_post) the page's script would send
                target = urljoin(page.url, form.action)
                outcome.response = data
                log("response", mode="form_post", to=target, **_summary(data))
                if deliver:
                    _deliver(outcome, log, form.method, target, data)
                return outcome
            if step is not None:
                outcome.steps.append(step)
            submitted = step
            log(
                "submit",
                step=step,
                **({"consent": credentials.consent} if step == "consent" else {}),
            )
            target = urljoin(page.url, form.action)
            resp = session.request(
                form.method, target, data=data, allow_redirects=False, timeout=TIMEOUT
            )
    outcome.error_text = "too many pages"
    log("stopped", reason=outcome.error_text)
    return outcome


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def _deliver(
    outcome: Outcome, log: _Log, method: str, target: str, data: dict[str, str] | None
) -> None:
    """Send the response to the app's redirect URI (msal's loopback listener)."""
    with requests.Session() as plain:
        plain.trust_env = False  # a proxy must never see the code
        resp = plain.request(method, target, data=data, allow_redirects=False, timeout=TIMEOUT)
    outcome.delivered = True
    outcome.listener_status = resp.status_code
    log("delivered", to=target.split("?", 1)[0], status=resp.status_code)


def _verify_from_env() -> str | bool:
    return os.environ.get(ENV_CA) or os.environ.get("REQUESTS_CA_BUNDLE") or True


def run(url: str) -> int:
    """Sign in at ``url`` with the environment's settings; 0 when the app got a response."""
    log = _Log(os.environ.get(ENV_LOG))
    try:
        credentials = Credentials.from_env()
        outcome = sign_in(url, credentials, verify=_verify_from_env(), log_path=log.path)
    except (BrowserError, requests.RequestException, OSError, ValueError) as exc:
        log("failed", reason=f"{type(exc).__name__}: {exc}")
        print(f"scripted browser: {exc}", file=sys.stderr)
        return 1
    log("done", delivered=outcome.delivered, aadsts=outcome.error_code)
    return 0 if outcome.delivered else 1


def main(argv: list[str] | None = None) -> int:
    """``URL`` (detach and return), ``--foreground URL`` or ``--detached URL``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] in (DETACHED, FOREGROUND):
        return run(args[1])
    if len(args) != 1 or args[0].startswith("-"):
        print(f"usage: python -m {MODULE} [--foreground] URL", file=sys.stderr)
        return 2
    try:
        Credentials.from_env()  # fail here, where webbrowser sees the exit status
    except BrowserError as exc:
        print(f"scripted browser: {exc}", file=sys.stderr)
        return 2
    subprocess.Popen(  # noqa: S603 -- our own interpreter and module
        [sys.executable, "-m", MODULE, DETACHED, args[0]],
        start_new_session=True,  # outlive webbrowser's wait; no terminal signals
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    return 0


def write_browser_script(directory: str | os.PathLike[str]) -> str:
    """Write an executable ``BROWSER`` script running this module; return its path.

    ``webbrowser`` takes ``BROWSER`` as one executable path (it does not split it
    on spaces), hence a script rather than ``python -m ...``.
    """
    path = Path(directory) / SCRIPT_NAME
    path.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {MODULE} "$@"\n', encoding="utf-8"
    )
    path.chmod(0o700)
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
