"""The active profile: `ppauth profile use NAME`, as `pac auth select` does.

Resolution everywhere a profile is chosen: ``profile=`` / ``--profile``, else
``PPAUTH_PROFILE``, else the file's ``active_profile``, else ``default``. These tests
run the real ``ppauth`` and ``PowerPlatformAuth()`` against the emulator, over HTTPS,
with real config files.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib

import pytest
import requests

from requests_ppauth import (
    ConfigurationError,
    PowerPlatformAuth,
    PowerPlatformCredential,
    explain_sources,
    source_report,
)
from requests_ppauth import plugins as plugins_module
from requests_ppauth.cli import config_file
from requests_ppauth.config import (
    FROM_ARGUMENT,
    FROM_DEFAULT,
    FROM_ENVIRONMENT,
    FROM_FILE,
    choose_profile,
    load_profile,
)
from tests.test_cli import (
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    failed,
    ok,
    ppauth,
)

ENVS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
APPS_SCOPE = "https://service.powerapps.com//.default"
OTHER_SECRET = "other~app-secret-0123456789"


@pytest.fixture(autouse=True)
def _fresh_global_plugins(monkeypatch):
    """PowerPlatformAuth uses the process-wide manager: give each test its own."""
    monkeypatch.setattr(plugins_module, "_plugins", None)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def profile_toml(name: str, emu, client_id: str, secret: str) -> str:
    return (
        f"[profiles.{name}]\n"
        f'tenant_id = "{emu.sample.tenant_id}"\n'
        f'client_id = "{client_id}"\n'
        f'client_secret = "{secret}"\n'
        f'authority_host = "{emu.authority_host}"\n'
        f'ca_bundle = "{emu.ca_bundle}"\n'
    )


@pytest.fixture
def two_apps(ppauth_env, ppauth_emulator):
    """A config file with profiles ``first`` (the sample app) and ``second`` (another
    app of the same tenant), a comment each, and no active profile; the client ids."""
    emu = ppauth_emulator
    other = emu.add_app(secret=OTHER_SECRET, name="second")
    ppauth_env.write_config(
        "# my Power Platform profiles\n"
        "\n"
        "# the sample app\n"
        + profile_toml("first", emu, emu.sample.client_id, emu.sample.client_secret)
        + "\n# another app\n"
        + profile_toml("second", emu, other.client_id, OTHER_SECRET)
    )
    return {"first": emu.sample.client_id, "second": other.client_id}


def last_client(emu) -> str:
    """The client id of the emulator's last token grant."""
    return emu.requests("token")[-1].client_id


def call_api(emu, auth: PowerPlatformAuth) -> None:
    """One API call, which must have needed a token grant of its own (so the client id
    of the last grant is the one this auth object chose)."""
    grants = emu.count("token")
    r = requests.get(emu.api_url + ENVS, auth=auth, verify=emu.ca_bundle)
    assert r.status_code == 200, r.text
    assert emu.count("token") == grants + 1


def api_auth(emu, **kwargs) -> PowerPlatformAuth:
    """``PowerPlatformAuth(**kwargs)`` for the emulator's API host; no shared token
    cache, so every object asks for its own token."""
    kwargs.setdefault("cache", False)
    return PowerPlatformAuth(hosts={emu.api_url.split("//")[1]: APPS_SCOPE}, **kwargs)


def listed(*extra: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(ok(ppauth("profile", "list", "--json", *extra, env=env)))


# -- use, list, and the library following it -------------------------------------------------


def test_use_marks_the_profile_and_everything_uses_it(ppauth_env, ppauth_emulator, two_apps):
    emu = ppauth_emulator
    before = ppauth_env.config_path.read_text()

    out = ok(ppauth("profile", "use", "second"))
    assert "active profile: 'second'" in out

    text = ppauth_env.config_path.read_text()
    assert tomllib.loads(text)["active_profile"] == "second"
    # the key goes above the first table and its comment; the file's opening comment and
    # every other line stay as they were
    assert text.startswith('# my Power Platform profiles\n\nactive_profile = "second"\n\n')
    assert text.replace('active_profile = "second"\n\n', "") == before
    assert mode(ppauth_env.config_path) == 0o600

    # list marks it, says why; --json has both the mark and where it came from
    lines = ok(ppauth("profile", "list")).splitlines()
    starred = [line for line in lines if line.startswith("* ")]
    assert len(starred) == 1 and starred[0].split()[1] == "second"
    assert "in use: second (the active profile, set by `ppauth profile use`" in lines[-1]
    data = listed()
    assert data["active_profile"] == "second"
    assert data["selected"] == {"name": "second", "from": "active_profile"}
    assert [(r["name"], r["current"], r["active"]) for r in data["profiles"]] == [
        ("first", False, False),
        ("second", True, True),
    ]
    # show with no name shows it, and says it is the one in use
    shown = ok(ppauth("profile", "show"))
    assert shown.startswith("[profiles.second] in ")
    assert "in use: yes (the active profile" in shown
    assert OTHER_SECRET not in shown
    assert "in use: no, second is (the active profile" in ok(ppauth("profile", "show", "first"))

    # the library, given no profile, uses that profile's app
    choice = choose_profile()
    assert (choice.name, choice.origin, choice.explicit) == ("second", FROM_FILE, True)
    call_api(emu, api_auth(emu))
    assert last_client(emu) == two_apps["second"]
    grants = emu.count("token")
    cred = PowerPlatformCredential(cache=False)
    assert cred.get_token(APPS_SCOPE).token.count(".") == 2
    assert emu.count("token") == grants + 1 and last_client(emu) == two_apps["second"]
    assert explain_sources().profile == "second"
    assert source_report(api_auth(emu)).answered_by == "file"

    # and the command line too
    before_grants = emu.count("token")
    token = ok(ppauth("token")).strip()
    assert token.count(".") == 2 and emu.count("token") == before_grants + 1
    assert last_client(emu) == two_apps["second"]
    assert json.loads(ok(ppauth("sources", "--json")))["profile"] == "second"


def test_ppauth_profile_and_the_argument_win_over_the_active_profile(
    ppauth_env, ppauth_emulator, two_apps
):
    emu = ppauth_emulator
    ok(ppauth("profile", "use", "second"))

    # profile= beats the active profile
    call_api(emu, api_auth(emu, profile="first"))
    assert last_client(emu) == two_apps["first"]
    assert choose_profile("first").origin == FROM_ARGUMENT

    # PPAUTH_PROFILE beats the active profile, and profile= beats PPAUTH_PROFILE
    ppauth_env.set(PPAUTH_PROFILE="first")
    assert choose_profile().origin == FROM_ENVIRONMENT
    call_api(emu, api_auth(emu))
    assert last_client(emu) == two_apps["first"]
    call_api(emu, api_auth(emu, profile="second"))
    assert last_client(emu) == two_apps["second"]

    # list says where the choice comes from and what it overrides
    out = ok(ppauth("profile", "list"))
    assert [line.split()[1] for line in out.splitlines() if line.startswith("* ")] == ["first"]
    overrides = "in use: first (chosen by PPAUTH_PROFILE; it overrides the active profile 'second')"
    assert overrides in out
    data = listed()
    assert data["selected"] == {"name": "first", "from": "PPAUTH_PROFILE"}
    assert [r["name"] for r in data["profiles"] if r["active"]] == ["second"]
    grants = emu.count("token")
    assert ok(ppauth("token")) and last_client(emu) == two_apps["first"]
    assert emu.count("token") == grants + 1

    # --profile beats PPAUTH_PROFILE
    out = ok(ppauth("profile", "list", "--profile", "second"))
    assert "in use: second (chosen by --profile)" in out
    assert ok(ppauth("token", "--profile", "second")) and last_client(emu) == two_apps["second"]

    # `use` while PPAUTH_PROFILE is set records it, and warns that the variable wins
    proc = ppauth("profile", "use", "first")
    assert ok(proc) and "PPAUTH_PROFILE=first overrides the active profile" in proc.stderr


def test_use_clear_goes_back_to_default(ppauth_env, ppauth_emulator, two_apps):
    before = ppauth_env.config_path.read_text()
    ok(ppauth("profile", "use", "first"))
    out = ok(ppauth("profile", "use", "--clear"))
    assert "cleared the active profile 'first'" in out and "'default' is used" in out
    assert ppauth_env.config_path.read_text() == before  # back to the very same text
    choice = choose_profile()
    assert (choice.name, choice.origin, choice.explicit) == ("default", FROM_DEFAULT, False)
    assert "in use: default (the default" in ok(ppauth("profile", "list"))
    assert listed()["active_profile"] is None
    # clearing again writes nothing
    mtime = ppauth_env.config_path.stat().st_mtime_ns
    assert "no active profile" in ok(ppauth("profile", "use", "--clear"))
    assert ppauth_env.config_path.stat().st_mtime_ns == mtime


def test_use_needs_a_name_or_clear_and_takes_no_profile_option(ppauth_env, two_apps):
    before = ppauth_env.config_path.read_bytes()
    line, hint = failed(ppauth("profile", "use"), 2)
    assert "give a profile NAME or --clear" in line and "--clear" in hint
    line, _ = failed(ppauth("profile", "use", "first", "--clear"), 2)
    assert "NAME and --clear together" in line
    line, _ = failed(ppauth("profile", "use", "first", "--profile", "second"), 2)
    assert "does not use --profile" in line
    assert ppauth_env.config_path.read_bytes() == before


# -- refusals ------------------------------------------------------------------------------


def test_an_unknown_name_is_refused_and_nothing_is_written(ppauth_env, two_apps):
    before = ppauth_env.config_path.read_bytes()
    mtime = ppauth_env.config_path.stat().st_mtime_ns
    line, hint = failed(ppauth("profile", "use", "ghost"), secrets=(OTHER_SECRET,))
    assert "there is no profile 'ghost'" in line and str(ppauth_env.config_path) in line
    assert "profiles there: first, second" in hint and "ppauth profile add" in hint
    assert ppauth_env.config_path.read_bytes() == before
    assert ppauth_env.config_path.stat().st_mtime_ns == mtime


def test_use_without_a_config_file_creates_nothing(ppauth_env):
    line, hint = failed(ppauth("profile", "use", "prod"))
    assert "no profile 'prod'" in line and "profiles there: none" in hint
    assert not ppauth_env.config_path.exists()
    assert "no active profile" in ok(ppauth("profile", "use", "--clear"))
    assert not ppauth_env.config_path.exists()


def test_a_stale_active_profile_is_an_error_naming_the_key_and_the_fix(
    ppauth_env, ppauth_emulator, two_apps
):
    emu = ppauth_emulator
    path = ppauth_env.config_path
    path.write_text('active_profile = "gone"\n\n' + path.read_text())

    with pytest.raises(ConfigurationError) as excinfo:
        choose_profile()
    message = str(excinfo.value)
    assert "active_profile = 'gone'" in message and str(path) in message
    assert "[profiles.gone]" in message and "ppauth profile use <other>" in message
    assert "first, second" in message
    # not a silent fall back to another identity: the request is never sent
    with pytest.raises(ConfigurationError, match="active_profile = 'gone'"):
        call_api(emu, api_auth(emu))
    with pytest.raises(ConfigurationError, match="active_profile = 'gone'"):
        PowerPlatformCredential().get_token(APPS_SCOPE)
    with pytest.raises(ConfigurationError, match="active_profile = 'gone'"):
        explain_sources()
    assert emu.count("token") == 0

    line, hint = failed(ppauth("token"), secrets=(OTHER_SECRET,))
    assert "active_profile = 'gone'" in line and str(path) in line
    assert "ppauth profile use <other>" in hint
    failed(ppauth("profile", "show"))  # show with no name needs the choice
    # list still lists (it is how one finds a name to use), with the warning
    proc = ppauth("profile", "list")
    assert "first" in ok(proc) and "second" in proc.stdout
    assert "* " not in proc.stdout and "active_profile = 'gone'" in proc.stderr
    assert listed()["selected"] is None

    # a profile named by the argument or the variable needs no active profile
    call_api(emu, api_auth(emu, profile="first"))
    assert last_client(emu) == two_apps["first"]
    ppauth_env.set(PPAUTH_PROFILE="second")
    assert ok(ppauth("token")) and last_client(emu) == two_apps["second"]
    ppauth_env.set(PPAUTH_PROFILE=None)

    # and the fix the message gives works
    ok(ppauth("profile", "use", "first"))
    assert tomllib.loads(path.read_text())["active_profile"] == "first"
    assert path.read_text().count("active_profile") == 1
    call_api(emu, api_auth(emu))
    assert last_client(emu) == two_apps["first"]


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("active_profile = 3", "not a number"),
        ("active_profile = true", "not a boolean"),
        ('active_profile = ["first"]', "not an array"),
        ('active_profile = { name = "first" }', "not a table"),
        ('active_profile = ""', "is empty"),
        ('active_profile = "   "', "is empty"),
    ],
)
def test_a_malformed_active_profile_is_a_typed_error_and_nothing_is_lost(
    ppauth_env, ppauth_emulator, two_apps, line, what
):
    path = ppauth_env.config_path
    path.write_text(line + "\n\n" + path.read_text())
    before = path.read_bytes()

    for attempt in (choose_profile, lambda: load_profile("first")):
        with pytest.raises(ConfigurationError) as excinfo:
            attempt()
        message = str(excinfo.value)
        assert what in message and str(path) in message
        assert 'active_profile = "prod"' in message and "first, second" in message
        assert "remove the line" in message
        assert OTHER_SECRET not in message

    # every command reports it, with a hint; none rewrites the file
    for args in (
        ("token",),
        ("profile", "list"),
        ("profile", "use", "first"),
        ("profile", "use", "--clear"),
        ("profile", "remove", "second"),
        ("profile", "add", "third", "--scope", "https://x/.default"),
    ):
        error, hint = failed(ppauth(*args), secrets=(OTHER_SECRET,))
        assert "active_profile" in error and str(path) in error, args
        assert "remove the line" in hint or "profile's name" in hint, (args, hint)
    assert path.read_bytes() == before


def test_an_active_profile_must_be_top_level(ppauth_env, two_apps):
    """A plugin's sub-table may hold a key called active_profile: it is the plugin's,
    and neither chooses the profile nor is touched by `use`."""
    path = ppauth_env.config_path
    path.write_text(path.read_text() + '\n[profiles.second.someplugin]\nactive_profile = "x"\n')
    assert choose_profile().name == "default"
    ok(ppauth("profile", "use", "second"))
    data = tomllib.loads(path.read_text())
    assert data["active_profile"] == "second"
    assert data["profiles"]["second"]["someplugin"] == {"active_profile": "x"}
    ok(ppauth("profile", "use", "--clear"))
    data = tomllib.loads(path.read_text())
    assert "active_profile" not in data
    assert data["profiles"]["second"]["someplugin"] == {"active_profile": "x"}


# -- other commands keep the mark -----------------------------------------------------------


def test_removing_the_active_profile_clears_the_mark(ppauth_env, ppauth_emulator, two_apps):
    ok(ppauth("profile", "use", "second"))
    out = ok(ppauth("profile", "remove", "second"))
    assert "it was the active profile: now 'default' is used" in out
    text = ppauth_env.config_path.read_text()
    assert "active_profile" not in text and "[profiles.second]" not in text
    assert "# my Power Platform profiles" in text and "# the sample app" in text
    assert choose_profile().origin == FROM_DEFAULT

    # removing another profile leaves the mark where it is
    ok(ppauth("profile", "add", "third", "--scope", "https://x/.default"))
    ok(ppauth("profile", "use", "first"))
    out = ok(ppauth("profile", "remove", "third"))
    assert "active profile" not in out
    assert tomllib.loads(ppauth_env.config_path.read_text())["active_profile"] == "first"


def test_add_and_replace_keep_the_active_profile(ppauth_env, two_apps):
    path = ppauth_env.config_path
    ok(ppauth("profile", "use", "first"))
    ok(ppauth("profile", "add", "gov", "--cloud", "gcchigh"))
    ok(ppauth("profile", "add", "gov", "--cloud", "gcc", "--replace"))
    ok(ppauth("profile", "add", "first", "--scope", "https://y/.default", "--replace"))
    data = tomllib.loads(path.read_text())
    assert data["active_profile"] == "first"
    assert data["profiles"]["first"] == {"scope": "https://y/.default"}
    assert data["profiles"]["gov"] == {"cloud": "gcc"}
    assert path.read_text().startswith("# my Power Platform profiles\n")


def test_an_existing_line_is_replaced_in_place_keeping_its_comment(ppauth_env, two_apps):
    path = ppauth_env.config_path
    path.write_text("active_profile = 'first'  # my usual one\n\n" + path.read_text())
    ok(ppauth("profile", "use", "second"))
    text = path.read_text()
    assert text.startswith('active_profile = "second"  # my usual one\n\n# my Power')
    assert text.count("active_profile") == 1


@pytest.mark.parametrize(("before", "after"), [(0o644, 0o600), (0o600, 0o600), (0o400, 0o400)])
def test_the_file_mode_is_kept_never_readable_by_others(ppauth_env, two_apps, before, after):
    os.chmod(ppauth_env.config_path, before)
    ok(ppauth("profile", "use", "first"))
    assert mode(ppauth_env.config_path) == after
    assert tomllib.loads(ppauth_env.config_path.read_text())["active_profile"] == "first"


def test_with_active_on_unusual_layouts():
    """The text edit, and its fallback: when the edited text would not parse to the
    intended data, the file is written from the data (nothing is lost)."""
    profiles = {"a": {"cloud": "gcc"}}
    bare = '[profiles.a]\ncloud = "gcc"\n'
    assert config_file.with_active(bare, profiles, "a") == f'active_profile = "a"\n\n{bare}'
    assert config_file.with_active("", {}, None) == ""
    # a dotted-key layout with no [tables]: the key goes first
    dotted = 'profiles.a.cloud = "gcc"\n'
    edited = config_file.with_active(dotted, profiles, "a")
    assert tomllib.loads(edited) == {"active_profile": "a", "profiles": profiles}
    # a quoted key the line pattern does not know: rewritten from the data, still right
    quoted = '"active_profile" = "a"\n' + bare
    for active in ("a", None):
        edited = config_file.with_active(quoted, profiles, active)
        expected = {"profiles": profiles} | ({"active_profile": active} if active else {})
        assert tomllib.loads(edited) == expected


def test_help_names_use_and_the_order_plainly():
    from tests.test_cli_help import markup

    out = ok(ppauth("profile", "--help"))
    assert "use " in out and "make a profile the active one" in out
    assert "--profile, else PPAUTH_PROFILE, else the active profile" in " ".join(out.split())
    use = ok(ppauth("profile", "use", "--help"))
    assert use.startswith("usage: ppauth profile use") and "--clear" in use
    assert markup(out) == [] and markup(use) == []
