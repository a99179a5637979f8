"""``ppauth profile list|show|add|remove|use``: the ``[profiles.<name>]`` tables of the config file.

``use NAME`` makes NAME the active profile, as ``pac auth select`` does: it writes
``active_profile = "NAME"`` at the top of the file, and every command and
``PowerPlatformAuth()`` given no profile uses it. ``--profile`` (``profile=``) and
``PPAUTH_PROFILE`` still win, in that order; ``use --clear`` goes back to ``default``.
``list`` marks the profile in use with ``*`` and says what chose it. Removing the
active profile clears the mark (the next command uses ``default``, and says so).

Secrets never reach the file unasked: ``add`` hands each one to a secret store (a
plugin's resolver that can store, such as the keyring plugin's) and writes the
reference it returns; with no store, it refuses unless ``--store-secret-in-file`` is
given. A reference (``keyring:...``, a Key Vault secret URL) is written as is.
``show`` and ``list`` never print a secret.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from requests_ppauth._redacted import EnvironView
from requests_ppauth.cli import common, config_file, logs, secret_store
from requests_ppauth.cli.failures import CLIError, UsageError
from requests_ppauth.config import (
    ACTIVE_KEY,
    DEFAULT_PROFILE,
    FROM_DEFAULT,
    FROM_FILE,
    SECRET_KEYS,
    SECRET_OPTION,
    ProfileChoice,
    choose_profile,
    config_path,
)
from requests_ppauth.errors import ConfigurationError
from requests_ppauth.plugins import get_plugins
from requests_ppauth.source_api import WELL_KNOWN

ASK = "\0ask"  # the option was given without a value: prompt, or read stdin
HIDDEN = "(hidden: stored in the file)"
_OPTIONS = (  # option, setting, help
    ("--tenant-id", "tenant_id", "directory (tenant) id or domain"),
    ("--client-id", "client_id", "application (client) id"),
    ("--certificate-path", "certificate_path", "PEM or PFX file with the key and certificate"),
    ("--username", "username", "user name, for username/password (ROPC) sign-in"),
    ("--scope", "scope", "scope for every host, instead of the host table"),
    (
        "--federated-token-file",
        "federated_token_file",
        "workload identity federation: the file holding the federated token (re-read for "
        "every token, as the platform rotates it)",
    ),
    (
        "--service-connection-id",
        "service_connection_id",
        "Azure Pipelines federation: the workload identity service connection's id, for a "
        "step that is not AzureCLI@2 (the pipeline gives the OIDC endpoint and token)",
    ),
    (
        "--oidc-audience",
        "oidc_audience",
        "GitHub Actions federation: the OIDC token's audience, when the app's federated "
        "credential expects another than api://AzureADTokenExchange",
    ),
    (
        "--managed-identity",
        "managed_identity",
        "an Azure managed identity: system, or a user-assigned identity's client id, "
        "object_id:<id> or resource id",
    ),
)
ORDER = (  # how a new profile's keys are written
    "tenant_id",
    "client_id",
    "client_secret",
    "certificate_path",
    "certificate_password",
    "send_certificate_chain",
    "username",
    "password",
    "device_code",
    "interactive",
    "federated_token_file",
    "service_connection_id",
    "oidc_audience",
    "managed_identity",
    "cloud",
    "authority_host",
    "scope",
    "ca_bundle",
    "sources",
)
_SECRETS = (
    ("--client-secret", "client_secret"),
    ("--certificate-password", "certificate_password"),
    ("--password", "password"),
)


def add(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``profile`` and its subcommands."""
    p = subparsers.add_parser(
        "profile",
        parents=parents,
        help="list, show, add, remove or choose (use) profiles in the config file",
        description=common.plain(
            "Edit the TOML config file ([profiles.<name>] tables). Its path: "
            "PPAUTH_CONFIG, else the platform's config directory. The profile used is "
            "--profile, else PPAUTH_PROFILE, else the active profile (`ppauth profile "
            "use NAME`), else default."
        ),
    )
    sub = p.add_subparsers(dest="profile_command", metavar="SUBCOMMAND", required=True)
    ls = sub.add_parser(
        "list", parents=parents, help="profiles in the config file, * marking the one in use"
    )
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)
    show = sub.add_parser("show", parents=parents, help="one profile's settings (no secrets)")
    show.add_argument(
        "name",
        nargs="?",
        help="default: --profile, PPAUTH_PROFILE, the active profile, or default",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)
    _add_parser(sub, parents)
    rm = sub.add_parser("remove", parents=parents, help="remove a profile")
    rm.add_argument("name")
    rm.add_argument(
        "--keep-secrets",
        action="store_true",
        help="leave the profile's secrets in their secret store",
    )
    rm.set_defaults(func=run_remove)
    use = sub.add_parser(
        "use",
        parents=parents,
        help="make a profile the active one (used when no --profile or PPAUTH_PROFILE)",
        description=common.plain(
            f'Record NAME as the active profile ({ACTIVE_KEY} = "NAME" in the config '
            "file), as `pac auth select` does. Commands and PowerPlatformAuth() given no "
            "profile use it; --profile and PPAUTH_PROFILE still win. --clear goes back "
            f"to the profile named {DEFAULT_PROFILE}."
        ),
    )
    use.add_argument("name", nargs="?", help="a profile in the config file")
    use.add_argument(
        "--clear", action="store_true", help=f"forget the active profile: use {DEFAULT_PROFILE}"
    )
    use.set_defaults(func=run_use)


def _add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "add",
        parents=parents,
        help="add a profile",
        description=common.plain(
            "Add [profiles.NAME] to the config file. A secret option given without "
            "a value prompts for it (or reads a line from stdin when it is not a terminal). "
            "Secrets go to a secret store plugin (the keyring plugin) and the file gets a "
            "reference; without one, --store-secret-in-file is required. --cloud, "
            "--authority-host and --ca-bundle are saved in the profile when given."
        ),
    )
    p.add_argument("name")
    for option, setting, text in _OPTIONS:
        p.add_argument(option, dest=f"set_{setting}", help=text)
    for option, setting in _SECRETS:
        p.add_argument(
            option,
            dest=f"secret_{setting}",
            nargs="?",
            const=ASK,
            metavar="VALUE",
            help="prompted for when no value is given; a reference (keyring:...) is kept as is",
        )
    p.add_argument("--send-certificate-chain", action="store_true", help="send x5c (SNI auth)")
    p.add_argument(
        "--device-code",
        action="store_true",
        help="a person signs in with `ppauth login` (MFA included); --username is a hint",
    )
    p.add_argument(
        "--interactive",
        action="store_true",
        help="a person signs in in the browser with `ppauth login` (a device code where no "
        "browser opens); --username is a hint",
    )
    p.add_argument("--sources", help="comma-separated sources to ask, in order (e.g. env,file)")
    p.add_argument("--secret-store", help="which secret store to use, when several are installed")
    p.add_argument(
        "--store-secret-in-file",
        action="store_true",
        help="write secrets into the config file in plain text (it is kept 0600)",
    )
    p.add_argument("--replace", action="store_true", help="replace an existing profile")
    p.set_defaults(func=run_add)


# -- reading ------------------------------------------------------------------------------
def kind(settings: dict[str, Any]) -> str:
    """Which credential a profile holds."""
    if "client_secret" in settings:
        return "client secret"
    if "certificate_path" in settings:
        return "certificate"
    if settings.get("interactive"):
        return "interactive browser"
    if settings.get("device_code"):
        return "device code"
    if "username" in settings:
        return "username/password"
    if "federated_token_file" in settings:
        return "workload identity"
    if "service_connection_id" in settings:
        return "azure pipelines federation"
    if "oidc_audience" in settings:
        return "github actions federation"
    if "managed_identity" in settings:
        return "managed identity"
    return "settings only"


def is_reference(text: str) -> bool:
    """Whether ``text`` refers to a secret rather than being one."""
    if any(r.claims(text) for r in get_plugins().resolvers()):
        return True
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    return scheme in WELL_KNOWN and (scheme != "https" or ".vault." in text)


def shown(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every secret replaced by where it is kept."""
    out: dict[str, Any] = {}
    for name, v in settings.items():
        if isinstance(v, dict) and set(v) == {"ref"}:
            out[name] = v
        elif isinstance(v, dict):
            out[name] = {k: HIDDEN if SECRET_OPTION.search(k) else i for k, i in v.items()}
        elif name in SECRET_KEYS:
            out[name] = v if isinstance(v, str) and is_reference(v) else HIDDEN
        else:
            out[name] = v
    return out


def _selection(args: argparse.Namespace) -> tuple[ProfileChoice | None, str | None]:
    """The profile in use and, when the file's active profile is broken, why not."""
    try:
        return choose_profile(args.profile, EnvironView()), None
    except ConfigurationError as exc:  # a stale active_profile: list/show still work
        return None, str(exc)


def _chosen_by(choice: ProfileChoice) -> str:
    return choice.describe("--profile")


def run_list(args: argparse.Namespace) -> int:
    """Print the profiles, ``*`` marking the one in use, and what chose it."""
    path = config_path()
    _, profiles = config_file.read(path)
    active = config_file.read_active(path)
    choice, broken = _selection(args)
    current = choice.name if choice else None
    rows = [
        {
            "name": n,
            "current": n == current,
            "active": n == active,
            "kind": kind(s),
            "client_id": s.get("client_id"),
            "tenant_id": s.get("tenant_id"),
        }
        for n, s in sorted(profiles.items())
    ]
    if broken:
        logs.warn(broken)
    if args.json:
        selected = {"name": choice.name, "from": choice.origin} if choice else None
        common.print_json(
            {
                "config": str(path),
                ACTIVE_KEY: active,
                "selected": selected,
                "profiles": rows,
            }
        )
        return 0
    sys.stdout.write(f"{path}{'' if profiles else ' (no profiles)'}\n")
    for r in rows:
        star = "*" if r["current"] else " "
        ident = f"client {r['client_id']}" if r["client_id"] else ""
        sys.stdout.write(f"{star} {r['name']:<16} {r['kind']:<18} {ident}\n".rstrip() + "\n")
    if choice is not None:
        sys.stdout.write(_in_use_line(choice, active, profiles))
    return 0


def _in_use_line(choice: ProfileChoice, active: str | None, profiles: dict[str, Any]) -> str:
    """Which profile is in use and what chose it; when --profile or PPAUTH_PROFILE
    overrides the file's active profile, both."""
    line = f"in use: {choice.name} ({_chosen_by(choice)}"
    if choice.name not in profiles:
        line += "; not in this file"
    if active is not None and choice.origin != FROM_FILE and active != choice.name:
        line += f"; it overrides the active profile {active!r}"
    if choice.origin == FROM_DEFAULT and profiles:
        line += "; `ppauth profile use NAME` chooses another"
    return line + ")\n"


def run_show(args: argparse.Namespace) -> int:
    """Print one profile, secrets hidden, and which profile is in use."""
    common.reject_unused(args, "profile show", uses=("profile", "verbose"))
    choice: ProfileChoice | None
    if args.name:  # a broken active profile is only a warning when it is not needed
        choice, broken = _selection(args)
        name = args.name
    else:
        choice, broken = choose_profile(args.profile, EnvironView()), None
        name = choice.name
    path = config_path()
    _, profiles = config_file.read(path)
    if name not in profiles:
        raise config_file.not_found(name, path, profiles)
    settings = shown(profiles[name])
    if broken:
        logs.warn(broken)
    if args.json:
        common.print_json(
            {
                "name": name,
                "config": str(path),
                "in_use": choice is not None and choice.name == name,
                "selected": {"name": choice.name, "from": choice.origin} if choice else None,
                ACTIVE_KEY: config_file.read_active(path),
                "settings": settings,
            }
        )
        return 0
    sys.stdout.write(f"[profiles.{name}] in {path}\n")
    if choice is not None and choice.name == name:
        sys.stdout.write(f"in use: yes ({_chosen_by(choice)})\n")
    elif choice is not None:
        sys.stdout.write(f"in use: no, {choice.name} is ({_chosen_by(choice)})\n")
    common.table([(k, _text(v)) for k, v in settings.items()], indent="  ")
    return 0


def _text(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(i)}" for k, i in v.items())
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v).lower() if isinstance(v, bool) else str(v)


# -- writing ------------------------------------------------------------------------------
def _read_secret(what: str) -> str:
    if sys.stdin.isatty():
        secret = getpass.getpass(f"{what}: ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise UsageError(f"no {what} given", "type it at the prompt, or pipe it on stdin")
    return secret


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for _, name, _ in _OPTIONS:
        if getattr(args, f"set_{name}"):
            settings[name] = getattr(args, f"set_{name}")
    if args.send_certificate_chain:
        settings["send_certificate_chain"] = True
    if args.device_code:
        settings["device_code"] = True
    if args.interactive:
        settings["interactive"] = True
    for name, given in (
        ("cloud", args.cloud),
        ("authority_host", args.authority_host),
        ("ca_bundle", args.ca_bundle),
    ):
        if given:
            settings[name] = given
    if args.sources:
        settings["sources"] = [s.strip() for s in args.sources.split(",") if s.strip()]
    _check_credential(args, settings)
    return settings


def _check_credential(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """One credential per profile, with what it needs: refused here rather than when
    the profile is first used."""
    given = [
        option
        for option, present in (
            ("--client-secret", args.secret_client_secret),
            ("--certificate-path", "certificate_path" in settings),
            ("--password", args.secret_password),
            ("--device-code", args.device_code),
            ("--interactive", args.interactive),
            ("--federated-token-file", "federated_token_file" in settings),
            ("--service-connection-id", "service_connection_id" in settings),
            ("--oidc-audience", "oidc_audience" in settings),
            ("--managed-identity", "managed_identity" in settings),
        )
        if present
    ]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} are {len(given)} credentials", "choose one")
    needs_app = given and given[0] != "--managed-identity"
    if (needs_app or "username" in settings) and "client_id" not in settings:
        raise UsageError("a credential needs --client-id", "add --client-id APP_ID")
    service_principal = (
        "--client-secret",
        "--certificate-path",
        "--federated-token-file",
        "--service-connection-id",
        "--oidc-audience",
    )
    if given and given[0] in service_principal and "tenant_id" not in settings:
        raise UsageError("a service principal needs --tenant-id", "add --tenant-id TENANT")
    if "--managed-identity" in given and "client_id" in settings:
        raise UsageError(
            "a managed identity is chosen by --managed-identity, not --client-id",
            "give its client id as --managed-identity CLIENT_ID",
        )
    if "username" in settings and not given:
        raise UsageError(
            "--username needs --password (or --interactive / --device-code, where it is a "
            "sign-in hint)",
            "add --password, to be prompted, or --interactive",
        )
    if args.secret_password and "username" not in settings:
        raise UsageError("--username and --password go together", "give both, or neither")


def run_add(args: argparse.Namespace) -> int:
    """Add the profile; secrets to a store, or (only when asked) to the file."""
    name = args.name
    settings = _settings(args)
    path = config_path()
    with config_file.locked(path):
        text, profiles = config_file.read(path)
        if name in profiles and not args.replace:
            raise CLIError(
                f"profile {name!r} already exists in {path}",
                "pass --replace to overwrite it, or `ppauth profile remove` it first",
            )
        placed = _place_secrets(args, name, settings, path)
        settings = {k: settings[k] for k in sorted(settings, key=ORDER.index)}
        if name in profiles:
            text = config_file.without_profile(text, profiles, name)
            profiles = {k: v for k, v in profiles.items() if k != name}
        try:
            config_file.write_atomic(path, config_file.with_profile(text, profiles, name, settings))
        except BaseException:
            for key, where in placed.items():
                if where != "file":
                    secret_store.forget(settings[key])
            raise
    sys.stdout.write(f"added profile {name!r} to {path}\n")
    for key, where in placed.items():
        sys.stdout.write(
            f"  {key}: in the config file (readable by you only)\n"
            if where == "file"
            else f"  {key}: in secret store {where} (the file holds {settings[key]})\n"
        )
    return 0


def _place_secrets(
    args: argparse.Namespace, name: str, settings: dict[str, Any], path: Path
) -> dict[str, str]:
    """Put each secret in a store (or the file when asked); where each went."""
    secrets: dict[str, str] = {}
    for option, key in _SECRETS:
        given = getattr(args, f"secret_{key}")
        if given is None:
            continue
        if given == ASK or given == "-":
            given = _read_secret(key.replace("_", " "))
        elif not is_reference(given):
            logs.warn(
                f"a secret on the command line is visible to other users (ps, shell history): "
                f"next time give {option} without a value, to be prompted"
            )
        if is_reference(given):
            settings[key] = given
        else:
            secrets[key] = given
    if not secrets:
        return {}
    store = None if args.store_secret_in_file else secret_store.choose(args.secret_store)
    if store is None and not args.store_secret_in_file:
        raise CLIError(
            f"refusing to write the {', '.join(secrets)} of profile {name!r} into {path} "
            "in plain text: no installed plugin is a secret store",
            "install one (requests-ppauth-keyring keeps secrets in the OS keyring), give a "
            "reference instead (keyring:NAME, a Key Vault secret URL), or pass "
            "--store-secret-in-file",
        )
    placed: dict[str, str] = {}
    for key, secret in secrets.items():
        if store is None:
            settings[key] = secret
            placed[key] = "file"
        else:
            settings[key] = store.store(name, key, secret)
            placed[key] = store.name
    return placed


def run_remove(args: argparse.Namespace) -> int:
    """Remove the profile (and, unless told otherwise, its stored secrets). Removing the
    active profile clears the mark too, in the same write: a mark naming no profile would
    make every later command fail until someone ran `ppauth profile use`."""
    common.reject_unused(args, "profile remove", uses=("verbose",), why="it removes NAME")
    name = args.name
    path = config_path()
    with config_file.locked(path):
        text, profiles = config_file.read(path)
        if name not in profiles:
            raise config_file.not_found(name, path, profiles)
        was_active = config_file.read_active(path) == name
        remaining = {k: v for k, v in profiles.items() if k != name}
        text = config_file.without_profile(text, profiles, name)
        if was_active:
            text = config_file.with_active(text, remaining, None)
        config_file.write_atomic(path, text)
    forgotten = []
    if not args.keep_secrets:
        for key in sorted(SECRET_KEYS):
            v = profiles[name].get(key)
            ref = v.get("ref") if isinstance(v, dict) else v
            if isinstance(ref, str) and is_reference(ref) and secret_store.forget(ref):
                forgotten.append(key)
    sys.stdout.write(f"removed profile {name!r} from {path}\n")
    if forgotten:
        sys.stdout.write(f"  and its {', '.join(forgotten)} from the secret store\n")
    if was_active:
        sys.stdout.write(
            f"  it was the active profile: now {DEFAULT_PROFILE!r} is used "
            "(`ppauth profile use NAME` chooses another)\n"
        )
    return 0


def run_use(args: argparse.Namespace) -> int:
    """Record the active profile (or, with ``--clear``, forget it)."""
    common.reject_unused(
        args, "profile use", uses=("verbose",), why="it records NAME as the active profile"
    )
    if bool(args.name) == args.clear:
        raise UsageError(
            "give a profile NAME or --clear" if not args.name else "NAME and --clear together",
            "`ppauth profile use NAME` makes NAME the active profile; "
            f"`ppauth profile use --clear` goes back to {DEFAULT_PROFILE!r}",
        )
    name: str | None = args.name
    path = config_path()
    with config_file.locked(path):
        text, profiles = config_file.read(path)
        if name is not None and name not in profiles:
            raise CLIError(
                f"there is no profile {name!r} in {path}: nothing was changed",
                f"profiles there: {', '.join(sorted(profiles)) or 'none'}; "
                "`ppauth profile add NAME` adds one, "
                f"`ppauth profile use --clear` goes back to {DEFAULT_PROFILE!r}",
            )
        before = config_file.read_active(path)
        if before != name:
            config_file.write_atomic(path, config_file.with_active(text, profiles, name))
    if name is None:
        sys.stdout.write(
            f"no active profile in {path}: {DEFAULT_PROFILE!r} is used\n"
            if before is None
            else f"cleared the active profile {before!r} in {path}: {DEFAULT_PROFILE!r} is used\n"
        )
    else:
        sys.stdout.write(f"active profile: {name!r} (in {path})\n")
    override = os.environ.get("PPAUTH_PROFILE")
    if override:
        logs.warn(
            f"PPAUTH_PROFILE={override} overrides the active profile where it is set: "
            "unset it to use the active profile"
        )
    return 0
