"""The TOML config file: ``[profiles.<name>]`` tables, validated on read.

Where: ``PPAUTH_CONFIG``, else ``<platform config dir>/requests-ppauth/config.toml``.
A profile holds both settings every source may use (``cloud``, ``authority_host``,
``scope``, ``sources``, ``ca_bundle``) and a credential the ``file`` source reads.
Plugins keep their own settings in sub-tables, ``[profiles.<name>.<plugin>]``,
which reach them untouched through ``SourceRequest.settings``.
Parsed files are memoised on (path, mtime, size): a long-running process that
builds many auth objects reads the file once.

One top-level key sits beside the tables: ``active_profile = "<name>"``, written by
``ppauth profile use``. :func:`choose_profile` is the one place a profile's name is
chosen: the ``profile=`` argument (``--profile``), else ``PPAUTH_PROFILE``, else the
file's ``active_profile``, else ``default``.
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from requests_ppauth.errors import ConfigurationError

APP_NAME = "requests-ppauth"

STRING_KEYS = frozenset(
    {
        "tenant_id",
        "client_id",
        "certificate_path",
        "username",
        "cloud",
        "authority_host",
        "scope",
        "ca_bundle",
        "managed_identity",
        "federated_token_file",
        "proxy",
        "oidc_audience",  # the audience of a pipeline's OIDC token (api://AzureADTokenExchange)
        "service_connection_id",  # an Azure Pipelines service connection's id
    }
)
SECRET_KEYS = frozenset({"client_secret", "certificate_password", "password"})
#: an option of a nested table (a cache backend's, a plugin's) whose value is a secret by
#: its name: shown hidden by ``ppauth profile show``, refused in clear in a shared file
SECRET_OPTION = re.compile(r"(?i)secret|password|passphrase|token|credential|key$")
BOOL_KEYS = frozenset({"send_certificate_chain", "device_code", "interactive"})
LIST_KEYS = frozenset({"sources"})
# cache = "file" | "memory" | "<plugin>" | "<directory>", or { backend = "...", ... }
CACHE_KEYS = frozenset({"cache"})
PROFILE_KEYS = STRING_KEYS | SECRET_KEYS | BOOL_KEYS | LIST_KEYS | CACHE_KEYS
# The file's one top-level setting: the profile used when no argument or variable names one.
ACTIVE_KEY = "active_profile"
TOP_LEVEL_KEYS = frozenset({"profiles", ACTIVE_KEY})
DEFAULT_PROFILE = "default"
# Where a chosen profile name came from (ProfileChoice.origin), strongest first.
FROM_ARGUMENT = "argument"
FROM_ENVIRONMENT = "PPAUTH_PROFILE"
FROM_FILE = ACTIVE_KEY
FROM_DEFAULT = "default"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``PPAUTH_CONFIG`` or the platform's user config directory."""
    env = os.environ if environ is None else environ
    if env.get("PPAUTH_CONFIG"):
        return Path(env["PPAUTH_CONFIG"]).expanduser()
    import platformdirs  # lazy: nothing at import time

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


@dataclass(frozen=True)
class Profile:
    """One ``[profiles.<name>]`` table (empty when the file or the table is absent)."""

    name: str
    path: Path
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)
    exists: bool = False
    file_mode: int | None = None
    available: tuple[str, ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        """A setting, or ``default``."""
        return self.settings.get(key, default)


@dataclass(frozen=True)
class ConfigFile:
    """A parsed config file: its profiles, its ``active_profile`` and its mode."""

    path: Path
    profiles: Mapping[str, dict[str, Any]] = field(repr=False)  # may hold plaintext secrets
    active: str | None = None
    mode: int = 0


@dataclass(frozen=True)
class ProfileChoice:
    """Which profile is used, and why: the CLI says where the choice came from (as
    ``pac auth list`` marks the active profile), and only a profile the user named
    makes "not in the file" worth an error."""

    name: str
    origin: str  # FROM_ARGUMENT, FROM_ENVIRONMENT, FROM_FILE or FROM_DEFAULT
    path: Path | None = None  # the config file, when the choice is its active_profile

    @property
    def explicit(self) -> bool:
        """Whether someone named the profile (an argument, the variable, the file)."""
        return self.origin != FROM_DEFAULT

    def describe(self, argument: str = "profile=") -> str:
        """Where the name came from, in words; ``argument`` names the argument as the
        caller knows it (``--profile`` on the command line)."""
        if self.origin == FROM_ARGUMENT:
            return f"chosen by {argument}"
        if self.origin == FROM_ENVIRONMENT:
            return "chosen by PPAUTH_PROFILE"
        if self.origin == FROM_FILE:
            return f"the active profile, set by `ppauth profile use` in {self.path}"
        return f"the default: no {argument}, PPAUTH_PROFILE or active profile"


_Parsed = tuple[dict[str, dict[str, Any]], str | None]
_memo: dict[Path, tuple[tuple[int, int], _Parsed]] = {}
_memo_lock = threading.Lock()


def _active(path: Path, data: Mapping[str, Any], profiles: Mapping[str, Any]) -> str | None:
    """The file's ``active_profile``, checked for shape (not whether the profile exists:
    that is :func:`choose_profile`'s to say, so ``ppauth profile use`` can repair it).
    The value is never echoed: a hand-edited file may hold anything there."""
    if ACTIVE_KEY not in data:
        return None
    active = data[ACTIVE_KEY]
    names = ", ".join(sorted(profiles)) or "none yet"
    fix = (
        f': set it to a profile\'s name in quotes ({ACTIVE_KEY} = "prod"; profiles: {names}), '
        f"or remove the line to use {DEFAULT_PROFILE!r}"
    )
    if not isinstance(active, str):
        raise ConfigurationError(
            f"{path}: {ACTIVE_KEY} must be a profile's name (a string), not "
            f"{_toml_type(active)}{fix}"
        )
    if not active.strip():
        raise ConfigurationError(f"{path}: {ACTIVE_KEY} is empty{fix}")
    return active


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _validate(path: Path, data: dict[str, Any]) -> _Parsed:
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigurationError(f"{path}: 'profiles' must be a table of [profiles.<name>]")
    unknown_top = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown_top:
        raise ConfigurationError(
            f"{path}: unknown top-level key(s) {', '.join(unknown_top)}; "
            f"settings go under [profiles.<name>] (the only top-level key is {ACTIVE_KEY})"
        )
    active = _active(path, data, profiles)
    for name, table in profiles.items():
        where = f"{path}: [profiles.{name}]"
        if not isinstance(table, dict):
            raise ConfigurationError(f"{where} must be a table")
        # [profiles.<name>.<plugin>] sub-tables belong to plugins and pass through as is;
        # a misspelt scalar key is still an error.
        unknown = sorted(
            k
            for k, v in table.items()
            if k not in PROFILE_KEYS and not (isinstance(v, dict) and not _is_ref_table(v))
        )
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(PROFILE_KEYS))} (plugin settings go in "
                f"[profiles.{name}.<plugin>] tables)"
            )
        for key, value in table.items():
            if key not in PROFILE_KEYS:
                continue  # a plugin's table
            ok = (
                (key in STRING_KEYS and isinstance(value, str))
                or (key in SECRET_KEYS and (isinstance(value, str) or _is_ref_table(value)))
                or (key in BOOL_KEYS and isinstance(value, bool))
                or (
                    key in LIST_KEYS
                    and isinstance(value, list)
                    and all(isinstance(v, str) for v in value)
                )
                or (
                    key in CACHE_KEYS
                    and (
                        (isinstance(value, str) and value.strip() != "")
                        or (isinstance(value, dict) and isinstance(value.get("backend"), str))
                    )
                )
            )
            if not ok:
                expected = (
                    "a string"
                    if key in STRING_KEYS
                    else 'a string or { ref = "scheme:..." }'
                    if key in SECRET_KEYS
                    else "true or false"
                    if key in BOOL_KEYS
                    else "a list of strings"
                    if key in LIST_KEYS
                    else 'a backend name or a directory ("file", "memory", "./tokens"), '
                    'or a table { backend = "name", ... }'
                )
                raise ConfigurationError(f"{where}: {key} must be {expected}")
        _check_values(where, table)
    return profiles, active


def _check_values(where: str, table: Mapping[str, Any]) -> None:
    """Refuse ids and clouds that cannot be right, naming the profile: here, so every
    source reading the profile, ``ppauth login`` and ``ppauth profile add`` (which
    validates what it writes through this loader) see it before any URL is built."""
    from requests_ppauth.clouds import CLOUDS, cloud_key
    from requests_ppauth.credentials import client_id_problem, tenant_id_problem

    for key, check in (("tenant_id", tenant_id_problem), ("client_id", client_id_problem)):
        if key in table:
            why = check(table[key])
            if why:
                raise ConfigurationError(f"{where}: {key} {why}")
    if "cloud" in table and cloud_key(table["cloud"]) not in CLOUDS:
        raise ConfigurationError(
            f"{where}: cloud {table['cloud']!r} is not a cloud: set it to one of "
            f"{', '.join(CLOUDS)}"
        )


def _is_ref_table(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"ref"} and isinstance(value["ref"], str)


def _parse(path: Path) -> _Parsed | str:
    """The validated profiles and active profile of ``path``, or the message of what is
    wrong with it.
    Never raises (see :func:`read_profiles`)."""
    try:
        return _validate(path, _load_toml(path))
    except ConfigurationError as exc:
        return str(exc)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ConfigurationError(
            f"config file {path} is a directory: point PPAUTH_CONFIG at a TOML file "
            "(e.g. <that directory>/config.toml)"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read config file {path}: {exc.strerror}: check its permissions, or "
            "point PPAUTH_CONFIG at another file"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(
            f"config file {path} is not UTF-8 text: save it as UTF-8, or point "
            "PPAUTH_CONFIG at the TOML config file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigurationError(
            f"config file {path} nests arrays or tables too deeply to read: remove the "
            "nesting (a profile needs none deeper than [profiles.<name>.<plugin>])"
        ) from None
    return data


def read_config(path: Path) -> ConfigFile | None:
    """The parsed file at ``path``; ``None`` when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read config file {path}: {exc.strerror}: check the path and its "
            "directories' permissions, or point PPAUTH_CONFIG at another file"
        ) from None
    key = (st.st_mtime_ns, st.st_size)
    with _memo_lock:
        hit = _memo.get(path)
        if hit and hit[0] == key:
            # the mode from this stat, not the memo: chmod changes neither mtime nor size
            return ConfigFile(path, hit[1][0], hit[1][1], st.st_mode)
    # The file's text and tables hold plaintext secrets: they live only in frames that
    # never raise (tracebacks record every frame's locals), and the error is raised here.
    outcome = _parse(path)
    if isinstance(outcome, str):
        raise ConfigurationError(outcome) from None
    with _memo_lock:
        _memo[path] = (key, outcome)
    return ConfigFile(path, outcome[0], outcome[1], st.st_mode)


def read_profiles(path: Path) -> tuple[dict[str, dict[str, Any]], int] | None:
    """All profiles in ``path`` and the file's mode; ``None`` when it does not exist."""
    found = read_config(path)
    if found is None:
        return None
    return dict(found.profiles), found.mode


def choose_profile(
    profile: str | None = None, environ: Mapping[str, str] | None = None
) -> ProfileChoice:
    """The profile to use: ``profile`` (the ``profile=`` argument, ``--profile``), else
    ``PPAUTH_PROFILE``, else the config file's ``active_profile``, else ``default``.

    The file is read only when neither names one. An active profile whose table is gone
    (removed by hand) is an error, not a quiet fall back to ``default``: that would send
    requests as another identity than the one the user chose.
    """
    if profile:
        return ProfileChoice(profile, FROM_ARGUMENT)
    env = os.environ if environ is None else environ
    if env.get("PPAUTH_PROFILE"):
        return ProfileChoice(env["PPAUTH_PROFILE"], FROM_ENVIRONMENT)
    path = config_path(env)
    found = read_config(path)
    if found is None or found.active is None:
        return ProfileChoice(DEFAULT_PROFILE, FROM_DEFAULT)
    if found.active not in found.profiles:
        raise stale_active_profile(found)
    return ProfileChoice(found.active, FROM_FILE, path)


def stale_active_profile(found: ConfigFile) -> ConfigurationError:
    """The error for an ``active_profile`` that names no profile of the file."""
    names = ", ".join(sorted(found.profiles)) or "none"
    return ConfigurationError(
        f"{found.path}: {ACTIVE_KEY} = {found.active!r} names no [profiles.{found.active}] table "
        f"(was it removed by hand?): run `ppauth profile use <other>` with one of the "
        f"profiles there ({names}), or `ppauth profile use --clear` to use "
        f"{DEFAULT_PROFILE!r}"
    )


def load_profile(name: str, environ: Mapping[str, str] | None = None) -> Profile:
    """Profile ``name`` from the config file (an empty one when absent)."""
    path = config_path(environ)
    found = read_profiles(path)
    if found is None:
        return Profile(name=name, path=path)
    profiles, mode = found
    return Profile(
        name=name,
        path=path,
        settings=profiles.get(name, {}),
        exists=name in profiles,
        file_mode=mode,
        available=tuple(sorted(profiles)),
    )
