"""The public answer to "which source answered, and why": ``explain_sources`` and
``source_report``, the same report ``ppauth sources`` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

import requests_ppauth
from requests_ppauth import ClientSecret, PowerPlatformAuth, SourceError
from requests_ppauth import plugins as plugins_module
from requests_ppauth.source_api import SourceReport, explain_sources, source_report

TENANT = "11111111-2222-3333-4444-555555555555"
SECRETS = ("env-secret~0123456789", "file-secret~0123456789", "third-secret~0123456789")


@pytest.fixture(autouse=True)
def _fresh_global_plugins(monkeypatch):
    monkeypatch.setattr(plugins_module, "_plugins", None)


def env_credential(ppauth_env) -> None:
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID="env-client", PPAUTH_CLIENT_SECRET=SECRETS[0]
    )


def file_credential(ppauth_env, extra: str = "") -> None:
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{TENANT}"\nclient_id = "file-client"\n'
        f'client_secret = "{SECRETS[1]}"\n{extra}'
    )


class Third:
    name = "third"

    def __init__(self, behaviour: str, priority: int = 15) -> None:
        self.behaviour = behaviour
        self.priority = priority

    def credential(self, request):
        if self.behaviour == "decline":
            request.note("the vault is locked")
            return None
        if self.behaviour == "raise":
            raise SourceError(self.name, "its vault is unreachable")
        if self.behaviour == "crash":
            raise RuntimeError("boom")
        return ClientSecret(tenant_id=TENANT, client_id="third-client", secret=SECRETS[2])


class ThirdPlugin:
    def __init__(self, source: Third) -> None:
        self.source = source

    @requests_ppauth.hookimpl
    def ppauth_register_sources(self, register):
        register(self.source)


def with_third(behaviour: str, priority: int = 15) -> None:
    plugins_module.get_plugins().register(ThirdPlugin(Third(behaviour, priority)), name="vaulty")


def assert_no_secret(report: SourceReport) -> None:
    for text in (repr(report), str(report)):
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {text}"


def test_env_answers_file_is_shadowed(ppauth_env):
    env_credential(ppauth_env)
    file_credential(ppauth_env)

    report = explain_sources()

    assert report.answered_by == "env" and report.failed_by is None
    assert [(o.name, o.outcome) for o in report.outcomes] == [
        ("env", "answered"),
        ("file", "shadowed"),
    ]
    env = report.outcome("env")
    assert (env.plugin, env.distribution, env.priority) == ("env", "requests-ppauth", 10)
    assert env.credential is not None and env.credential["client_id"] == "env-client"
    assert report.answered is env
    assert report.order == "priority"
    assert_no_secret(report)


def test_declined_sources_give_their_reason(ppauth_env):
    file_credential(ppauth_env)
    with_third("decline")

    report = explain_sources()

    third = report.outcome("third")
    assert (third.outcome, third.reason, third.plugin) == (
        "declined",
        "the vault is locked",
        "vaulty",
    )
    assert third.distribution is None  # registered in-process
    assert report.answered_by == "file"
    assert "declined: no PPAUTH_* or AZURE_* credential variables are set" in str(report)
    assert "by priority, lowest number first" in str(report)


def test_a_failing_source_is_the_one_a_lookup_raises(ppauth_env):
    file_credential(ppauth_env)
    with_third("raise")

    report = explain_sources()

    assert report.failed_by == "third" and report.answered_by is None
    third = report.outcome("third")
    assert third.outcome == "failed"
    assert "its vault is unreachable" in third.reason
    assert isinstance(third.error, SourceError)
    assert report.outcome("file").outcome == "shadowed"
    with pytest.raises(SourceError):  # the lookup agrees
        PowerPlatformAuth()._find_credential()


def test_a_crashing_source_is_reported_with_its_plugin(ppauth_env):
    with_third("crash")

    outcome = explain_sources().outcome("third")

    assert outcome.outcome == "failed"
    assert "source 'third' of plugin 'vaulty'" in outcome.reason, outcome.reason
    assert "raised RuntimeError: boom" in outcome.reason


@pytest.mark.parametrize(
    ("profile_sources", "argument", "order", "names"),
    [
        (None, None, "priority", ["env", "third", "file"]),
        ('sources = ["file", "env"]\n', None, "profile", ["file", "env"]),
        ('sources = ["file", "env"]\n', ["third"], "argument", ["third"]),
    ],
)
def test_the_order_says_where_it_came_from(ppauth_env, profile_sources, argument, order, names):
    file_credential(ppauth_env, profile_sources or "")
    with_third("decline")

    report = explain_sources(sources=argument)

    assert report.order == order
    assert [o.name for o in report.outcomes] == names


def test_explicit_profile_and_environ(ppauth_env):
    ppauth_env.write_config(
        f'[profiles.prod]\ntenant_id = "{TENANT}"\nclient_id = "prod-client"\n'
        f'client_secret = "{SECRETS[1]}"\n'
    )
    environ = dict(os.environ)
    environ.update(PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID="c", PPAUTH_CLIENT_SECRET=SECRETS[0])

    assert explain_sources("prod").answered_by == "file"
    assert explain_sources("prod", environ=environ).answered_by == "env"


def test_source_report_of_an_auth_object_matches_the_source_it_used(ppauth_emulator, ppauth_env):
    emu, s = ppauth_emulator, ppauth_emulator.sample
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{s.tenant_id}"\nclient_id = "{s.client_id}"\n'
        f'client_secret = "{s.client_secret}"\nauthority_host = "{emu.authority_host}"\n'
    )
    with_third("decline", priority=5)
    host = emu.api_url.split("//")[1]
    auth = PowerPlatformAuth(
        verify=emu.ca_bundle, hosts={host: "https://service.powerapps.com//.default"}, cache=False
    )
    before = emu.count("token")

    r = requests.get(
        emu.api_url + "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments",
        params={"api-version": "2020-10-01"},
        auth=auth,
        verify=emu.ca_bundle,
        timeout=30,
    )
    report = source_report(auth)

    assert r.status_code == 200, r.text
    assert emu.count("token") == before + 1
    assert report.answered_by == auth.provider.credential.source == "file"
    assert report.outcome("third").reason == "the vault is locked"
    assert emu.count("token") == before + 1, "a report requests no token"


def test_source_report_of_an_explicit_credential(ppauth_env):
    cred = ClientSecret(tenant_id=TENANT, client_id="c", secret=SECRETS[2])

    report = source_report(PowerPlatformAuth(credential=cred))

    assert (report.answered_by, report.outcomes) == ("explicit", ())
    assert_no_secret(report)


def test_ppauth_sources_says_declined_and_the_order_in_words(ppauth_env):
    file_credential(ppauth_env)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "requests_ppauth.cli", "sources", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    text = run()
    assert text.returncode == 0, text.stderr
    assert "by priority, lowest number first; the first to answer wins" in text.stdout
    assert "declined: no PPAUTH_* or AZURE_* credential variables are set" in text.stdout
    assert "passed" not in text.stdout, text.stdout

    rows = {r["name"]: r for r in json.loads(run("--json").stdout)["sources"]}
    assert (rows["env"]["outcome"], rows["env"]["plugin"]) == ("declined", "env")
    assert rows["file"]["outcome"] == "answered"
    report = explain_sources()
    assert [r for r in rows] == [o.name for o in report.outcomes]


def test_no_credential_lists_one_reason_per_line_with_one_hint(ppauth_env):
    """The command's error and its --verbose form: a line per source, the same hint."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "requests_ppauth.cli", *args, "token"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    quiet, verbose = run(), run("-v")

    assert quiet.returncode == verbose.returncode == 1, quiet.stderr + verbose.stderr
    lines = quiet.stderr.splitlines()
    assert lines[0] == (
        "ppauth: error: no credential found for profile 'default'. Sources asked, in order:"
    ), lines
    assert lines[1] == "  - env: no PPAUTH_* or AZURE_* credential variables are set", lines
    assert lines[2].startswith("  - file: no [profiles.default] in "), lines
    assert len(lines) == 4 and lines[3].startswith("hint: "), lines
    hint = lines[3].removeprefix("hint: ")
    assert "ppauth profile add" in hint and "ppauth sources" in hint, hint
    assert ";" not in lines[0], "reasons are not ;-joined on one line"
    assert "Traceback" not in quiet.stderr
    # --verbose adds the traceback, whose message ends with the very same hint
    assert "Traceback" in verbose.stderr
    assert f"Hint: {hint}" in verbose.stderr, verbose.stderr
    assert verbose.stderr.rstrip().endswith(lines[3]), verbose.stderr
    assert verbose.stderr.count("  - env: no PPAUTH_*") == 2  # message and error, same list
