"""``ppauth doctor``: is everything in place to get a token, and if not, what to fix.

Checks, in order: the config file parses (and keeps plaintext secrets private), the
cache directory's owner and mode, a credential is found, the certificate's expiry
(when one is used), the authority answers its discovery document (and through which
proxy, or why directly; credentials in a proxy URL are never shown), the clock agrees
with the authority's ``Date`` header, and Entra ID issues a token (bypassing the
cache, so the credential itself is tested). Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
import time
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from requests_ppauth._http import IdentityHttpClient
from requests_ppauth.auth import PowerPlatformAuth
from requests_ppauth.cache.file import DB_FILE, DB_SIDE_FILES, FileCache
from requests_ppauth.cli import common
from requests_ppauth.cli.failures import describe
from requests_ppauth.config import SECRET_KEYS, Profile, config_path, read_profiles
from requests_ppauth.credentials import ClientCertificate, ClientSecret, Credential, ManagedIdentity
from requests_ppauth.errors import PPAuthError, TokenAcquisitionError
from requests_ppauth.tokens import normalise_authority_host

SKEW_WARN = 60.0  # the Date header has one-second resolution; a minute is clearly off
SKEW_FAIL = 300.0  # Entra ID and the resources tolerate five minutes
CERT_WARN_DAYS = 30


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # ok, warn, fail, skip
    detail: str
    hint: str | None = None


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``doctor``."""
    p = subparsers.add_parser(
        "doctor",
        parents=parents,
        help="check config, credential, clock, certificate, cache and authority",
        description=common.plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks, print them; exit status 1 if one failed."""
    checks: list[Check] = []
    selected = check_config(args, checks)
    check_cache(args, checks)
    auth, cred = check_credential(args, checks)
    check_certificate(cred, checks)
    reachable = check_authority(args, auth, cred, checks)
    check_token(args, auth, cred, reachable, selected, checks)
    failed = [c for c in checks if c.status == "fail"]
    if args.json:
        common.print_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        shown = repr(selected.name) if selected is not None else "(not chosen: see config)"
        sys.stdout.write(f"ppauth doctor: profile {shown}\n")
        for c in checks:
            sys.stdout.write(
                f"  {c.status.upper() if c.status != 'ok' else 'ok':<5} {c.name:<12} {c.detail}\n"
            )
            if c.hint and c.status in ("fail", "warn"):
                sys.stdout.write(f"{'':<20}hint: {c.hint}\n")
        sys.stdout.write(
            f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed.\n"
            if failed
            else "All checks passed.\n"
        )
    return 1 if failed else 0


def check_config(args: argparse.Namespace, checks: list[Check]) -> Profile | None:
    """The config file parses; plaintext secrets are not readable by others."""
    path = config_path()
    try:
        found = read_profiles(path)
        selected = common.profile(args)
    except PPAuthError as exc:
        checks.append(Check("config", "fail", *describe(exc)))
        return None
    if found is None:
        checks.append(
            Check("config", "ok", f"no config file at {path} (none needed with PPAUTH_* variables)")
        )
        return selected
    profiles, mode = found
    names = ", ".join(sorted(profiles)) or "none"
    check = Check("config", "ok", f"{path} parses; profiles: {names}")
    plaintext = any(isinstance(s.get(k), str) for s in profiles.values() for k in SECRET_KEYS)
    if stat.S_IMODE(mode) & 0o077:
        check.status = "fail" if plaintext else "warn"
        check.detail += f"; mode {stat.S_IMODE(mode):o} lets other users read it"
        check.hint = f"chmod 600 {path}"
    if common.explicit_profile(args) and not selected.exists:
        check.status = "fail"
        check.detail += f"; profile {selected.name!r} is not in it"
        check.hint = "`ppauth profile list` shows the profiles; `ppauth profile add` adds one"
    checks.append(check)
    return selected


def check_cache(args: argparse.Namespace, checks: list[Check]) -> None:
    """The cache this profile uses answers; for the file cache, its directory and
    files belong to this user and nobody else can read them."""
    try:
        backend = common.cache_backend(args)
    except PPAuthError as exc:
        checks.append(Check("cache", "fail", *describe(exc)))
        return
    if not isinstance(backend, FileCache):
        # a plugin's backend may check itself (reachability, credentials, TLS, its key):
        # an optional ``diagnose()`` returning lines, raising what it found wrong
        diagnose = getattr(backend, "diagnose", None)
        try:
            lines = list(diagnose()) if callable(diagnose) else None
            if lines is None:
                backend.get(["doctor:probe"])
        except PPAuthError as exc:
            checks.append(Check("cache", "fail", *describe(exc)))
        except Exception as exc:  # any failure of a plugin's store is the finding
            checks.append(Check("cache", "fail", f"{backend.location}: {exc}"))
        else:
            detail = "; ".join(map(str, lines)) if lines else "answers"
            checks.append(Check("cache", "ok", f"{backend.location}: {detail}"))
        return
    # whether entries are sealed, by key id (never the key): said in the cache's line
    sealed = (
        f"; entries sealed (AES-256-GCM), key ids {', '.join(backend.sealer.key_ids)}"
        if backend.sealer is not None
        else "; entries not sealed (set PPAUTH_CACHE_KEY to seal them: `ppauth cache keygen`)"
    )
    directory = backend.directory
    if not directory.exists():
        checks.append(
            Check("cache", "ok", f"{directory} is created (mode 700) on first use{sealed}")
        )
        return
    problems: list[tuple[str, str]] = []
    for path, want, fix in (
        (directory, 0o700, "chmod 700"),
        (directory / "locks", 0o700, "chmod 700"),  # the key locks' folder: same checks
        *((directory / (DB_FILE + side), 0o600, "chmod 600") for side in ("", *DB_SIDE_FILES)),
    ):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) and path != directory:
            problems.append((f"{path} is a symbolic link", f"remove it: rm {path}"))
            continue
        if stat.S_ISLNK(st.st_mode):
            st = os.stat(path)
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            problems.append(
                (
                    f"{path} belongs to uid {st.st_uid}",
                    "set PPAUTH_CACHE_DIR to a directory of yours",
                )
            )
        elif stat.S_IMODE(st.st_mode) & 0o077:
            problems.append(
                (f"{path} has mode {stat.S_IMODE(st.st_mode):o}, not {want:o}", f"{fix} {path}")
            )
    if hasattr(os, "statvfs") and os.statvfs(directory).f_flag & os.ST_RDONLY:
        problems.append(
            (
                f"{directory} is on a read-only file system: tokens there are read, new "
                "ones are not shared",
                "set PPAUTH_CACHE_DIR to a writable directory (or --cache memory)",
            )
        )
    elif not os.access(directory, os.W_OK):
        problems.append((f"{directory} is not writable", f"chmod u+w {directory}"))
    if problems:
        checks.append(Check("cache", "fail", "; ".join(p for p, _ in problems), problems[0][1]))
    else:
        checks.append(Check("cache", "ok", f"{directory}: yours, private{sealed}"))


def check_credential(
    args: argparse.Namespace, checks: list[Check]
) -> tuple[PowerPlatformAuth | None, Credential | None]:
    """A source has a credential for the profile."""
    try:
        auth = common.build_auth(args, cache=False)
        cred = auth.provider.credential
    except PPAuthError as exc:
        checks.append(Check("credential", "fail", *describe(exc)))
        return None, None
    who = f"user {cred.user}" if cred.user else f"tenant {cred.tenant_id}"
    checks.append(
        Check(
            "credential",
            "ok",
            f"{cred.kind} for client {cred.client_id}, {who} (source {cred.source})",
        )
    )
    return auth, cred


def check_certificate(cred: Credential | None, checks: list[Check]) -> None:
    """The certificate's end date, when a certificate is used."""
    if isinstance(cred, ClientSecret):
        checks.append(
            Check(
                "expiry",
                "skip",
                "a client secret's end date is not visible to "
                "the app; Entra ID reports an expired one as AADSTS7000222",
            )
        )
        return
    if not isinstance(cred, ClientCertificate):
        return
    from cryptography import x509

    from requests_ppauth.certificates import parse_certificate

    try:
        parsed = parse_certificate(cred.certificate, cred.password, cred.path or "the certificate")
    except PPAuthError as exc:
        checks.append(Check("certificate", "fail", *describe(exc)))
        return
    leaf = x509.load_pem_x509_certificates(parsed.chain_pem.encode())[0]
    end = leaf.not_valid_after_utc.timestamp()
    days = (end - time.time()) / 86400
    detail = f"thumbprint {parsed.thumbprint}, valid until {common.iso(end)}"
    if days < 0:
        checks.append(
            Check(
                "certificate",
                "fail",
                f"{detail}: expired",
                "create a new certificate and upload it to the app registration",
            )
        )
    elif days < CERT_WARN_DAYS:
        checks.append(
            Check(
                "certificate",
                "warn",
                f"{detail}: {int(days)} days left",
                "renew it and upload the new one before it expires",
            )
        )
    else:
        checks.append(Check("certificate", "ok", f"{detail} ({int(days)} days left)"))


def check_authority(
    args: argparse.Namespace,
    auth: PowerPlatformAuth | None,
    cred: Credential | None,
    checks: list[Check],
) -> bool:
    """The discovery document answers; the clock agrees with its Date header."""
    import requests

    if auth is None:
        auth = common.build_auth(args, cache=False)
    try:
        provider = auth.provider
    except PPAuthError as exc:
        checks.append(Check("authority", "fail", *describe(exc)))
        return False
    host = provider.authority_host
    if cred is not None and cred.authority_host and not args.authority_host:
        host = normalise_authority_host(cred.authority_host)
    tenant = cred.tenant_id if cred is not None else "organizations"
    url = f"{host}/{tenant}/v2.0/.well-known/openid-configuration"
    # the HTTP client msal gets: same CA bundle and proxies, no CA or netrc from the env
    try:
        client = IdentityHttpClient(
            verify=provider.verify, timeout=(5.0, 10.0), proxies=provider.proxies
        )
        route = client.route(url).describe()
    except PPAuthError as exc:  # a malformed proxy URL in the environment
        checks.append(Check("authority", "fail", *describe(exc)))
        return False
    if isinstance(cred, ManagedIdentity):
        route += "; managed identity endpoints always direct"
    started = time.time()
    try:
        resp = client.get(url)
    except (requests.RequestException, OSError, PPAuthError) as exc:
        checks.append(Check("authority", "fail", *describe(exc)))
        return False
    finally:
        client.close()
    ended = time.time()
    if resp.status_code != 200:
        body: dict[str, Any] = {}
        with contextlib.suppress(ValueError, TypeError):
            body = dict(resp.json())
        error = TokenAcquisitionError.from_msal(
            body or {"error": f"HTTP {resp.status_code}"}, f"{host} rejected tenant {tenant!r}"
        )
        line, hint = describe(error)
        checks.append(Check("authority", "fail", line, hint))
        return False
    checks.append(
        Check(
            "authority",
            "ok",
            f"{host} answered discovery for {tenant} in {(ended - started) * 1000:.0f} ms, {route}",
        )
    )
    _check_clock(resp.headers.get("Date"), (started + ended) / 2, checks)
    return True


def _check_clock(date: str | None, local: float, checks: list[Check]) -> None:
    if not date:
        checks.append(Check("clock", "skip", "the authority sent no Date header"))
        return
    try:
        remote = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        checks.append(Check("clock", "skip", f"unreadable Date header {date!r}"))
        return
    skew = local - remote
    text = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the authority"
    if abs(skew) > SKEW_FAIL:
        checks.append(
            Check(
                "clock",
                "fail",
                text,
                "fix the system clock (NTP): tokens and "
                "assertions are refused beyond five minutes of skew",
            )
        )
    elif abs(skew) > SKEW_WARN:
        checks.append(Check("clock", "warn", text, "sync the system clock (NTP)"))
    else:
        checks.append(Check("clock", "ok", f"within {max(abs(skew), 1):.0f} s of the authority"))


def check_token(
    args: argparse.Namespace,
    auth: PowerPlatformAuth | None,
    cred: Credential | None,
    reachable: bool,
    selected: Profile | None,
    checks: list[Check],
) -> None:
    """Entra ID issues a token for the credential (the cache is bypassed)."""
    if auth is None or cred is None or not reachable or selected is None:
        checks.append(Check("token", "skip", "needs a credential and a reachable authority"))
        return
    scope = common.default_scope(args, selected)
    try:
        token = auth.provider.get(scope)
    except PPAuthError as exc:
        checks.append(Check("token", "fail", *describe(exc)))
        return
    checks.append(
        Check(
            "token",
            "ok",
            f"Entra ID issued a token for {scope} (expires {common.from_now(token.expires_on)})",
        )
    )
