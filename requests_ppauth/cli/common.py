"""What the commands share: the profile, the auth object, URLs, time and JSON output,
help text rendered plain, and refusing global options a command would ignore."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from requests_ppauth._redacted import EnvironView
from requests_ppauth.auth import PowerPlatformAuth
from requests_ppauth.cache import CacheBackend
from requests_ppauth.cli.failures import CLIError, UsageError
from requests_ppauth.clouds import get_cloud
from requests_ppauth.config import Profile, choose_profile, load_profile
from requests_ppauth.credentials import Credential

# reStructuredText in docstrings, which double as --help descriptions: roles
# (:mod:`x`, :class:`~a.B`, :func:`title <target>`), ``literals``, `links`_, and the
# "::" that announces a literal block.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.S)
_LINK = re.compile(r"`([^`<]+?)(?:\s*<[^>]*>)?`__?")
_DIRECTIVE = re.compile(r"^\.\. [a-z-]+::.*$\n?", re.M)
_EMPHASIS = re.compile(r"(?<![\w*`])\*{1,2}([A-Za-z][\w' -]*?[A-Za-z]|[A-Za-z])\*{1,2}(?![\w*])")


def _role_text(match: re.Match[str]) -> str:
    text = match.group(1)
    if "<" in text and text.endswith(">"):  # :func:`the title <target>`
        return text[: text.index("<")].strip()
    if text.startswith("~"):  # :class:`~requests_ppauth.PowerPlatformAuth`: the last part
        return text[1:].rsplit(".", 1)[-1]
    return text


def _literal_text(match: re.Match[str]) -> str:
    text = match.group(1)
    # a command or anything with spaces keeps the quotes every hint uses (`ppauth doctor`);
    # a single name (PPAUTH_CONFIG, requests.Session) reads fine bare
    return f"`{text}`" if " " in text else text


def plain(text: str | None) -> str:
    """``text`` (a docstring, a help string) without its reStructuredText markup.

    Module docstrings are the commands' ``--help`` descriptions; argparse prints them
    as they are, so markup meant for Sphinx would reach the terminal as backticks and
    colons. Every command's parser goes through this one function.
    """
    if not text:
        return ""
    text = _DIRECTIVE.sub("", text)
    text = _ROLE.sub(_role_text, text)
    text = _LITERAL.sub(_literal_text, text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _EMPHASIS.sub(lambda m: m.group(1), text)
    return re.sub(r"(?<=\S)::$", ":", text, flags=re.M)


# The global options (argparse dest -> the flag to name in a message).
GLOBAL_OPTIONS = {
    "profile": "--profile",
    "cloud": "--cloud",
    "authority_host": "--authority-host",
    "ca_bundle": "--ca-bundle",
    "host_scope": "--host-scope",
    "allow_host": "--allow-host",
    "cache": "--cache",
    "verbose": "--verbose",
}


def reject_unused(
    args: argparse.Namespace, command: str, uses: Iterable[str], why: str = ""
) -> None:
    """A usage error (exit status 2) naming the global options given to ``command`` that
    it does not use (every one not in ``uses``).

    Every command accepts the global options, before or after its name; one that would
    ignore some must say so, or ``ppauth demo --cloud china`` looks like a demo of the
    China cloud. ``why`` says what the command does instead.
    """
    used = set(uses)
    given = [
        flag
        for dest, flag in GLOBAL_OPTIONS.items()
        if dest not in used and getattr(args, dest, None) not in (None, False, [])
    ]
    if given:
        names = ", ".join(given)
        raise UsageError(
            f"`ppauth {command}` does not use {names}" + (f": {why}" if why else ""),
            f"drop {names}; `ppauth {command} --help` lists what it takes",
        )


def profile_name(args: argparse.Namespace) -> str:
    """``--profile``, else ``PPAUTH_PROFILE``, else the active profile, else ``default``."""
    return choose_profile(args.profile, EnvironView()).name


def explicit_profile(args: argparse.Namespace) -> bool:
    """Whether the user named the profile (then a missing one is worth saying)."""
    return choose_profile(args.profile, EnvironView()).explicit


def profile(args: argparse.Namespace) -> Profile:
    """The selected profile (empty when the config file or the table is absent)."""
    return load_profile(profile_name(args), EnvironView())


def host_scopes(args: argparse.Namespace) -> dict[str, str]:
    """``--host-scope`` entries as ``{host: scope}``."""
    return dict(args.host_scope or [])


def build_auth(
    args: argparse.Namespace,
    *,
    scope: str | None = None,
    hosts: dict[str, str] | None = None,
    cache: bool = True,
    credential: Credential | None = None,
) -> PowerPlatformAuth:
    """A :class:`PowerPlatformAuth` configured from the global options (and
    ``credential`` instead of the sources', when given).

    ``--allow-host`` replaces the default allow-list (as ``allowed_hosts=`` does);
    hosts given a scope with ``--host-scope`` stay allowed.
    """
    mapped = {**host_scopes(args), **(hosts or {})}
    allowed = set(args.allow_host) | set(mapped) if args.allow_host else None
    return PowerPlatformAuth(
        profile=args.profile,
        scope=scope,
        hosts=mapped or None,
        allowed_hosts=allowed,
        cloud=args.cloud,
        authority_host=args.authority_host,
        verify=args.ca_bundle or None,
        cache=(getattr(args, "cache", None) or True) if cache is True else cache,
        credential=credential,
    )


def cache_backend(args: argparse.Namespace) -> CacheBackend:
    """The token cache this command uses, chosen as PowerPlatformAuth chooses it:
    ``--cache``, else ``PPAUTH_CACHE``, else the profile's ``cache``, else ``file``."""
    from requests_ppauth.cache.select import resolve

    selected = profile(args)
    return resolve(
        getattr(args, "cache", None),
        profile_setting=selected.get("cache"),
        environ=EnvironView(),  # its repr hides the values: frames that raise hold it
        where="--cache" if getattr(args, "cache", None) else "cache",
        profile_tables=selected.settings,  # [profiles.<name>.<backend>]: that backend's options
        origin=selected,  # plaintext secrets in a file others can read are refused
    )


def ca_bundle(args: argparse.Namespace, selected: Profile | None = None) -> str | bool:
    """The CA bundle for this command's HTTPS traffic: ``--ca-bundle``, the profile's
    ``ca_bundle``, ``PPAUTH_CA_BUNDLE``; ``True`` (the system's CAs) otherwise."""
    chosen = selected if selected is not None else profile(args)
    path = args.ca_bundle or chosen.get("ca_bundle") or os.environ.get("PPAUTH_CA_BUNDLE")
    if not path:
        return True
    if not Path(path).is_file():
        raise CLIError(
            f"the CA bundle {path} does not exist",
            "fix --ca-bundle, PPAUTH_CA_BUNDLE or the profile's ca_bundle",
        )
    return str(path)


def cloud_name(args: argparse.Namespace, selected: Profile) -> str:
    """``--cloud``, else the profile's ``cloud``, else ``public``."""
    return str(args.cloud or selected.get("cloud") or "public")


def default_scope(args: argparse.Namespace, selected: Profile) -> str:
    """The profile's ``scope``, else the cloud's Power Platform API scope."""
    if selected.get("scope"):
        return str(selected.get("scope"))
    return next(iter(get_cloud(cloud_name(args, selected)).hosts.values()))


def bap_scope(args: argparse.Namespace, selected: Profile) -> str:
    """The scope of the cloud's BAP (Power Apps admin) API."""
    cloud = get_cloud(cloud_name(args, selected))
    return next(s for h, s in cloud.hosts.items() if ".bap." in h)


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL; a usage error otherwise."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UsageError(f"{url!r} is not a valid URL", "write it as https://host/path") from None
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        raise UsageError(
            f"{url!r} is not an http(s) URL", "write it as https://host[:port]/path?query"
        )
    return url


def netloc(url: str) -> str:
    """``host[:port]`` of ``url``, lower-case."""
    return urlsplit(url).netloc.lower()


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified; ``None`` for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return data if isinstance(data, dict) else None


def iso(epoch: float) -> str:
    """``2026-01-31T12:00:00Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_now(epoch: float, now: float | None = None) -> str:
    """``in 59 min``, ``in 2 h 5 min``, ``3 min ago``."""
    delta = epoch - (time.time() if now is None else now)
    minutes = int(abs(delta) // 60)
    text = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
    if abs(delta) < 60:
        text = f"{int(abs(delta))} s"
    return f"in {text}" if delta >= 0 else f"{text} ago"


def print_json(data: Any) -> None:
    """Pretty JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table(rows: list[tuple[str, str]], indent: str = "") -> None:
    """Aligned ``key  value`` lines on stdout."""
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        sys.stdout.write(f"{indent}{key:<{width}}  {value}\n")
