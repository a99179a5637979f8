"""`ppauth` end to end: every command in a subprocess, against the emulator.

Each test runs ``python -m requests_ppauth.cli`` with the isolated environment of the
``ppauth_env`` fixture; failures must be one line plus a hint on stderr, with no
traceback and no secret. Other test_cli_* files import the helpers defined here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import requests

from tests._cache_state import on_disk

ROOT = Path(__file__).resolve().parent.parent
PP_SCOPE = "https://api.powerplatform.com/.default"
APPS_SCOPE = "https://service.powerapps.com//.default"
PP_ENVIRONMENTS = "/environmentmanagement/environments?api-version=2024-10-01"
BAP_ENVIRONMENTS = (
    "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"
)


def ppauth(*args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout=90):
    """Run ``ppauth ARGS`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "requests_ppauth.cli", *args],
        input=stdin,
        env=os.environ.copy() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def ok(proc) -> str:
    """Assert success; the stdout."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def failed(proc, status: int = 1, *, secrets: tuple[str, ...] = ()) -> tuple[str, str]:
    """Assert the failure contract: exit status, one error line plus a hint, no
    traceback, no secret anywhere. Returns (error line, hint line)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == status, f"exit {proc.returncode}\n{out}"
    assert "Traceback" not in out
    for secret in secrets:
        assert secret not in out
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("ppauth") and ": error: " in lines[0], lines[0]
    assert lines[1].startswith("hint: ") and len(lines[1]) > len("hint: ") + 5, lines[1]
    return lines[0], lines[1]


def hostport(url: str) -> str:
    return url.split("//", 1)[1]


def third_party_plugins() -> str:
    """Installed plugins other than the built-ins, to block in the subprocesses: these
    tests are about the command, and must not depend on (or write to) an OS keyring."""
    return ",".join(sorted(ep.name for ep in entry_points(group="requests_ppauth")))


@pytest.fixture(scope="session")
def _bytecode_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "pycache"


@pytest.fixture(autouse=True)
def _cli_environment(ppauth_env, _bytecode_cache):
    """Only the built-in plugins; and compiled modules cached under the test's temp
    directory (PYTHONPYCACHEPREFIX), so a hundred subprocesses do not each compile the
    package from source when PYTHONDONTWRITEBYTECODE is set."""
    ppauth_env.set(
        PPAUTH_DISABLE_PLUGINS=third_party_plugins() or None,
        PYTHONDONTWRITEBYTECODE=None,
        PYTHONPYCACHEPREFIX=str(_bytecode_cache),
    )


@pytest.fixture
def emu(ppauth_emulator, ppauth_env):
    """A fresh emulator, with PPAUTH_* pointing at its sample confidential app."""
    ppauth_env.use_emulator(ppauth_emulator, "secret")
    return ppauth_emulator


@pytest.fixture
def shared_emu(ppauth_session_emulator, ppauth_env):
    """The session's emulator (for tests that count nothing), PPAUTH_* pointing at it."""
    ppauth_env.use_emulator(ppauth_session_emulator, "secret")
    return ppauth_session_emulator


# -- the command line itself ---------------------------------------------------------------


def test_help_on_every_command_and_python_dash_m():
    commands = [
        [],
        ["token"],
        ["whoami"],
        ["request"],
        ["sources"],
        ["profile"],
        ["profile", "list"],
        ["profile", "show"],
        ["profile", "add"],
        ["profile", "remove"],
        ["cache"],
        ["cache", "path"],
        ["cache", "list"],
        ["cache", "clear"],
        ["doctor"],
        ["register-app"],
        ["emulator"],
        ["demo"],
    ]
    driver = textwrap.dedent(
        f"""
        import contextlib, io, json
        from requests_ppauth.cli import main
        results = []
        for argv in {commands!r}:
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    main([*argv, "--help"])
                code = None
            except SystemExit as exc:
                code = exc.code
            results.append([argv, code, out.getvalue()])
        print(json.dumps(results))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    for argv, code, text in json.loads(ok(proc)):
        assert code == 0, argv
        assert text.startswith("usage: ppauth"), argv
        assert "--verbose" in text, argv  # the global options are on every command
    main_help = json.loads(proc.stdout)[0][2]
    assert "demo" in main_help and "register-app" in main_help
    assert ok(
        subprocess.run(
            [sys.executable, "-m", "requests_ppauth", "--version"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    ).startswith("ppauth ")


def test_usage_errors_exit_2_with_one_line_and_a_hint():
    line, hint = failed(ppauth("frobnicate"), 2)
    assert "invalid choice" in line and "--help" in hint
    line, _ = failed(ppauth("token", "--scope", "a", "--resource", "https://x"), 2)
    assert "not allowed with" in line
    failed(ppauth("request", "GET"), 2)
    line, _ = failed(ppauth("--cloud", "moon", "token"), 2)
    assert "unknown cloud" in line
    line, _ = failed(ppauth("token", "--authority-host", "http://login.example/x"), 2)
    assert "must be https://host[:port]" in line


# -- token and whoami ----------------------------------------------------------------------


def test_token_prints_a_token_the_api_accepts(emu):
    token = ok(ppauth("token", "--scope", APPS_SCOPE)).strip()

    assert token.count(".") == 2 and "\n" not in token
    resp = requests.get(
        emu.api_url + BAP_ENVIRONMENTS,
        headers={"Authorization": f"Bearer {token}"},
        verify=emu.ca_bundle,
        timeout=30,
    )
    assert resp.status_code == 200 and resp.json()["value"]
    assert emu.count("token") == 1


def test_token_json_for_scripts_and_the_cache_answers_the_second_time(emu):
    first = json.loads(ok(ppauth("token", "--json")))
    second = json.loads(ok(ppauth("token", "--json")))

    assert first["scope"] == PP_SCOPE and first["tokenType"] == "Bearer"
    assert first["tenant"] == emu.sample.tenant_id
    assert first["expiresOn"].endswith("Z") and first["expires_on"] > 0
    assert second["accessToken"] == first["accessToken"]
    assert emu.count("token") == 1  # the second process read the on-disk cache


def test_token_resource_takes_the_scope_of_the_host(shared_emu):
    api = shared_emu.api_url
    data = json.loads(
        ok(
            ppauth(
                "token",
                "--resource",
                api + "/anything",
                "--host-scope",
                f"{hostport(api)}={APPS_SCOPE}",
                "--json",
            )
        )
    )
    assert data["scope"] == APPS_SCOPE
    line, hint = failed(ppauth("token", "--resource", "https://example.com/x"))
    assert "example.com" in line and "--host-scope" in hint


def test_whoami_shows_the_claims_never_the_token(emu):
    text = ok(ppauth("whoami"))
    data = json.loads(ok(ppauth("whoami", "--json")))
    token = json.loads(ok(ppauth("token", "--json")))["accessToken"]

    assert emu.sample.tenant_id in text and emu.sample.client_id in text
    assert "app-only" in text and "source env" in text
    assert data["tenant"] == emu.sample.tenant_id and data["app"] == emu.sample.client_id
    assert data["identityType"] == "app" and data["user"] is None
    assert data["claims"]["aud"].rstrip("/") == PP_SCOPE.removesuffix("/.default")
    for output in (text, json.dumps(data)):
        assert token not in output and token.split(".")[2] not in output


def test_whoami_for_a_user(shared_emu, ppauth_env):
    ppauth_env.use_emulator(shared_emu, "password")
    ppauth_env.set(PPAUTH_CLIENT_SECRET=None)
    data = json.loads(ok(ppauth("whoami", "--scope", APPS_SCOPE, "--json")))

    assert data["user"] == shared_emu.sample.username
    assert data["identityType"] == "user" and data["scopes"] == ["user_impersonation"]
    assert data["credential"] == "password"


# -- request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "scope", "link", "key"),
    [
        (BAP_ENVIRONMENTS, APPS_SCOPE, "nextLink", "name"),
        (PP_ENVIRONMENTS, PP_SCOPE, "@odata.nextLink", "id"),
    ],
)
def test_request_all_follows_paging(shared_emu, path, scope, link, key):
    api = shared_emu.api_url
    mapping = f"{hostport(api)}={scope}"
    # BAP pages by 3 by itself; the Power Platform API by its page size (100 unless set)
    before, shared_emu.management.page_size = shared_emu.management.page_size, 3
    try:
        page = json.loads(ok(ppauth("request", "GET", api + path, "--host-scope", mapping)))
        everything = json.loads(
            ok(ppauth("request", "get", api + path, "--host-scope", mapping, "--all"))
        )
    finally:
        shared_emu.management.page_size = before

    assert link in page and len(page["value"]) < 7
    assert [e[key] for e in everything["value"]] == [f"env-{i:04d}" for i in range(7)]


def test_request_with_a_json_body_and_headers(shared_emu, ppauth_env):
    sample = shared_emu.sample
    ppauth_env.use_emulator(shared_emu, "password")
    ppauth_env.set(
        PPAUTH_CLIENT_SECRET=None,
        PPAUTH_USERNAME=sample.admin_username,
        PPAUTH_PASSWORD=sample.admin_password,
    )
    api = shared_emu.api_url
    url = f"{api}/providers/Microsoft.BusinessAppPlatform/adminApplications/{sample.client_id}"
    data = json.loads(
        ok(
            ppauth(
                "request",
                "PUT",
                url + "?api-version=2020-10-01",
                "--json",
                '{"note": "from ppauth"}',
                "-H",
                "x-ms-client-request-id: 1234",
                "--host-scope",
                f"{hostport(api)}={APPS_SCOPE}",
            )
        )
    )
    assert data["applicationId"] == sample.client_id


def test_request_whoami_on_a_dataverse_style_host(shared_emu):
    api = shared_emu.api_url
    data = json.loads(
        ok(
            ppauth(
                "request",
                "GET",
                api + "/api/data/v9.2/WhoAmI",
                "--host-scope",
                f"{hostport(api)}={api}/.default",
            )
        )
    )
    assert set(data) >= {"UserId", "BusinessUnitId", "OrganizationId"}


def test_request_to_a_host_that_is_not_allowed_sends_nothing(emu):
    proc = ppauth("request", "GET", emu.api_url + BAP_ENVIRONMENTS)

    line, hint = failed(proc, secrets=(emu.sample.client_secret,))
    assert "not a Power Platform host" in line
    assert f"--host-scope {hostport(emu.api_url)}=SCOPE" in hint
    assert emu.count("environments") == 0 and emu.count("token") == 0


def test_request_allow_host_restricts_the_allow_list(shared_emu):
    api = shared_emu.api_url
    other = "api.bap.microsoft.com"
    line, _ = failed(
        ppauth(
            "request",
            "GET",
            f"https://{other}/x",
            "--allow-host",
            hostport(api),
            "--scope",
            APPS_SCOPE,
        )
    )
    assert other in line
    ok(
        ppauth(
            "request",
            "GET",
            api + BAP_ENVIRONMENTS,
            "--allow-host",
            hostport(api),
            "--scope",
            APPS_SCOPE,
        )
    )


@pytest.mark.parametrize(
    ("args", "status", "expected"),
    [
        (["GET", "notaurl"], 2, "is not an http(s) URL"),
        (["GET", "ftp://example.com/x"], 2, "is not an http(s) URL"),
        (["GET", "https://example.com:99999/x"], 2, "is not a valid URL"),
        (["POST", "https://api.bap.microsoft.com/x", "--json", "{nope"], 2, "not valid JSON"),
        (["GET", "https://api.bap.microsoft.com/x", "-H", "NoColon"], 2, "NAME:VALUE"),
        (["TRACE", "https://api.bap.microsoft.com/x"], 2, "TRACE"),
    ],
)
def test_request_bad_arguments(args, status, expected):
    line, _ = failed(ppauth("request", *args), status)
    assert expected in line


def test_request_http_error_and_unreachable_host(shared_emu):
    api = shared_emu.api_url
    line, hint = failed(
        ppauth("request", "GET", api + "/nothing", "--host-scope", f"{hostport(api)}={PP_SCOPE}")
    )
    assert "HTTP 404" in line and "No such route" in line and "URL" in hint
    line, hint = failed(
        ppauth("request", "GET", "https://127.0.0.1:9/x", "--host-scope", f"127.0.0.1:9={PP_SCOPE}")
    )
    assert "cannot reach 127.0.0.1:9" in line


# -- failures on the way to a token ---------------------------------------------------------


def test_no_credential(ppauth_env):
    """One reason per line, the same hint with or without -v."""
    for verbose in ((), ("-v",)):
        proc = ppauth(*verbose, "token")
        lines = proc.stderr.splitlines()
        assert proc.returncode == 1, proc.stderr
        assert verbose or "Traceback" not in proc.stderr, proc.stderr  # -v: the debug log
        assert (
            "ppauth: error: no credential found for profile 'default'. Sources asked, in order:"
            in lines
        ), lines
        assert "  - env: no PPAUTH_* or AZURE_* credential variables are set" in lines, lines
        hint = lines[-1]
        assert hint.startswith("hint: ") and "ppauth profile add" in hint, lines
        assert "ppauth sources" in hint


def test_wrong_secret(emu, ppauth_env):
    wrong = "not-the-secret~0123456789"
    ppauth_env.set(PPAUTH_CLIENT_SECRET=wrong)
    line, hint = failed(ppauth("token"), secrets=(wrong, emu.sample.client_secret))

    assert "AADSTS7000215" in line and "invalid_client" in line
    assert "Value, not its Secret ID" in hint


def test_unreachable_authority(ppauth_emulator, ppauth_env):
    ppauth_env.use_emulator(ppauth_emulator)
    ppauth_env.set(PPAUTH_AUTHORITY_HOST="https://127.0.0.1:9")
    line, hint = failed(ppauth("token"), secrets=(ppauth_emulator.sample.client_secret,))

    assert "cannot reach the authority host 127.0.0.1:9" in line
    assert "network" in hint


def test_untrusted_authority_certificate(ppauth_emulator, ppauth_env):
    ppauth_env.use_emulator(ppauth_emulator)
    ppauth_env.set(PPAUTH_CA_BUNDLE=None)  # the emulator's CA is not trusted then
    _, hint = failed(ppauth("token"))
    assert "PPAUTH_CA_BUNDLE" in hint


def test_verbose_logs_debug_but_never_a_secret_or_token(emu, ppauth_env):
    proc = ppauth("--verbose", "token", "--json")
    token = json.loads(ok(proc))["accessToken"]

    assert "DEBUG" in proc.stderr
    assert emu.sample.client_secret not in proc.stderr
    assert token not in proc.stderr and token.split(".")[2] not in proc.stderr

    ppauth_env.set(PPAUTH_CLIENT_SECRET="wrong-secret-value-42")
    proc = ppauth("token", "-v", "--scope", APPS_SCOPE)  # not cached: asks Entra ID
    assert proc.returncode == 1 and "Traceback" in proc.stderr  # --verbose shows it
    assert "wrong-secret-value-42" not in proc.stderr + proc.stdout


# -- sources ----------------------------------------------------------------------------------


def test_sources_say_who_answers_and_why_the_others_passed(shared_emu, ppauth_env):
    text = ok(ppauth("sources"))
    data = json.loads(ok(ppauth("sources", "--json")))

    assert "1. env" in text and "ANSWERS" in text and "2. file" in text
    assert data["answered_by"] == "env"
    rows = {r["name"]: r for r in data["sources"]}
    assert rows["env"]["status"] == "answers"
    assert rows["env"]["credential"]["client_id"] == shared_emu.sample.client_id
    assert rows["file"]["status"] == "passed" and "no [profiles.default]" in rows["file"]["reason"]
    assert {"env", "file", "github", "azure_pipelines", "managed"} <= set(data["plugins"])
    assert shared_emu.sample.client_secret not in text + json.dumps(data)

    ppauth_env.write_config(
        '[profiles.default]\ntenant_id = "t.example"\nclient_id = "file-app"\n'
        'client_secret = "s3cr3t-file"\n'
    )
    data = json.loads(ok(ppauth("sources", "--json")))
    rows = {r["name"]: r for r in data["sources"]}
    assert (
        rows["file"]["status"] == "shadowed"
        and rows["file"]["credential"]["client_id"] == "file-app"
    )
    assert "s3cr3t-file" not in json.dumps(data)


def test_sources_follow_the_profile_order_and_fail_without_a_credential(ppauth_env):
    ppauth_env.write_config('[profiles.ci]\nsources = ["file", "env"]\n')
    proc = ppauth("sources", "--profile", "ci")

    line, _ = failed(proc)
    assert "no source has a credential for profile 'ci'" in line
    assert proc.stdout.index("1. file") < proc.stdout.index("2. env")
    assert "the profile's sources list" in proc.stdout


def test_sources_show_a_broken_source(ppauth_env):
    ppauth_env.set(PPAUTH_CLIENT_SECRET="half-configured-secret")
    proc = ppauth("sources")
    line, _ = failed(proc, secrets=("half-configured-secret",))
    assert "source 'env' failed" in line and "PPAUTH_CLIENT_ID" in line
    assert "ERROR" in proc.stdout


# -- cache --------------------------------------------------------------------------------------


def test_cache_path_list_clear(emu, ppauth_env):
    assert ok(ppauth("cache", "path")).strip() == str(ppauth_env.cache_dir / "cache.db")
    assert "0 tokens" in ok(ppauth("cache", "list"))
    token = json.loads(ok(ppauth("token", "--json")))["accessToken"]

    text = ok(ppauth("cache", "list"))
    data = json.loads(ok(ppauth("cache", "list", "--json")))
    assert "1 token" in text and PP_SCOPE in text and "expires" in text
    (entry,) = data["tokens"]
    assert entry["scope"] == PP_SCOPE and entry["client_id"] == emu.sample.client_id
    assert entry["expired"] is False and entry["expires_on"] > 0
    assert token.encode() in on_disk(ppauth_env.cache_dir)  # there, and not listed
    for output in (text, json.dumps(data)):
        assert token not in output and token.split(".")[2] not in output

    assert "removed 1 token" in ok(ppauth("cache", "clear"))
    assert json.loads(ok(ppauth("cache", "list", "--json")))["tokens"] == []
    assert token.encode() not in on_disk(ppauth_env.cache_dir)  # nor in SQLite's log
    ok(ppauth("token"))
    assert emu.count("token") == 2  # cleared means asked again


def test_cache_refuses_a_directory_others_can_read(ppauth_env):
    ppauth_env.cache_dir.mkdir(mode=0o755)
    (ppauth_env.cache_dir / "cache.db").write_text("")
    os.chmod(ppauth_env.cache_dir, 0o755)  # noqa: S103 - the unsafe mode under test
    line, hint = failed(ppauth("cache", "list"))
    assert "accessible to other users" in line and "chmod 700" in hint


# -- doctor -----------------------------------------------------------------------------------


def test_doctor_all_good(emu):
    text = ok(ppauth("doctor"))
    data = json.loads(ok(ppauth("doctor", "--json")))

    assert "All checks passed." in text
    assert data["ok"] is True
    status = {c["name"]: c["status"] for c in data["checks"]}
    assert status == {
        "config": "ok",
        "cache": "ok",
        "credential": "ok",
        "expiry": "skip",
        "authority": "ok",
        "clock": "ok",
        "token": "ok",
    }
    assert emu.sample.client_secret not in text + json.dumps(data)


def test_doctor_checks_the_certificate_end_date(ppauth_emulator, ppauth_env):
    from requests_ppauth.testing import make_client_certificate

    ppauth_env.use_emulator(ppauth_emulator, "certificate")  # the sample: valid 30 days
    data = json.loads(ok(ppauth("doctor", "--json")))
    check = next(c for c in data["checks"] if c["name"] == "certificate")
    assert check["status"] == "warn" and "29 days left" in check["detail"]
    assert "thumbprint" in check["detail"] and "renew" in check["hint"]

    expired = ppauth_env.root / "expired.pem"
    expired.write_bytes(make_client_certificate("expired", days=0, slot="expired").pem_bundle)
    expired.chmod(0o600)
    ppauth_env.set(PPAUTH_CLIENT_CERTIFICATE_PATH=str(expired))
    proc = ppauth("doctor")
    assert proc.returncode == 1 and "FAIL  certificate" in proc.stdout
    assert "expired" in proc.stdout and "upload it" in proc.stdout


def test_doctor_fails_on_a_wrong_secret_and_a_bad_cache(emu, ppauth_env):
    ppauth_env.set(PPAUTH_CLIENT_SECRET="wrong-secret-for-doctor")
    ppauth_env.cache_dir.mkdir(mode=0o700)
    os.chmod(ppauth_env.cache_dir, 0o777)  # noqa: S103 - the unsafe mode under test
    proc = ppauth("doctor")
    assert proc.returncode == 1
    assert "wrong-secret-for-doctor" not in proc.stdout + proc.stderr
    assert "FAIL  cache" in proc.stdout and "FAIL  token" in proc.stdout
    assert "AADSTS7000215" in proc.stdout and "chmod 700" in proc.stdout
    assert "2 checks failed." in proc.stdout


def test_doctor_reports_a_cache_log_others_can_read(emu, ppauth_env):
    ppauth_env.cache_dir.mkdir(mode=0o700)
    log = ppauth_env.cache_dir / "cache.db-wal"
    log.write_bytes(b"")
    os.chmod(log, 0o644)
    proc = ppauth("doctor")
    assert proc.returncode == 1
    assert "FAIL  cache" in proc.stdout and "mode 644" in proc.stdout
    assert f"chmod 600 {log}" in proc.stdout


def test_doctor_with_nothing_configured_and_no_authority(ppauth_env):
    ppauth_env.set(PPAUTH_AUTHORITY_HOST="https://127.0.0.1:9")
    data = json.loads(ppauth("doctor", "--json").stdout)
    status = {c["name"]: c["status"] for c in data["checks"]}
    assert data["ok"] is False
    assert status["credential"] == "fail" and status["authority"] == "fail"
    assert status["token"] == "skip"


def test_doctor_reports_a_broken_config_file(ppauth_env):
    ppauth_env.write_config("[profiles.x]\nclient_id = 3\n")
    proc = ppauth("doctor")
    assert proc.returncode == 1 and "FAIL  config" in proc.stdout
    assert "client_id must be a string" in proc.stdout
