"""`ppauth profile list|show|add|remove`: the config file, edited safely."""

from __future__ import annotations

import json
import stat
import tomllib

from tests.test_cli import (
    _bytecode_cache,  # noqa: F401 - a fixture _cli_environment uses
    _cli_environment,  # noqa: F401 - the autouse fixture
    failed,
    ok,
    ppauth,
)

TENANT = "11111111-2222-3333-4444-555555555555"
SECRET = "profile-secret~value-0123"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def add_args(name: str = "prod", *extra: str) -> list[str]:
    return ["profile", "add", name, "--tenant-id", TENANT, "--client-id", "app-1", *extra]


def test_a_secret_never_reaches_the_file_unasked(ppauth_env):
    proc = ppauth(*add_args("prod", "--client-secret"), stdin=SECRET + "\n")

    line, hint = failed(proc, secrets=(SECRET,))
    assert "refusing to write the client_secret of profile 'prod'" in line
    assert "--store-secret-in-file" in hint and "keyring" in hint
    assert not ppauth_env.config_path.exists()


def test_add_with_the_secret_in_the_file_when_asked(ppauth_env, ppauth_emulator):
    emu = ppauth_emulator
    s = emu.sample
    args = [
        "profile",
        "add",
        "emu",
        "--tenant-id",
        s.tenant_id,
        "--client-id",
        s.client_id,
        "--client-secret",
        "--store-secret-in-file",
        "--authority-host",
        emu.authority_host,
        "--ca-bundle",
        emu.ca_bundle,
    ]
    proc = ppauth(*args, stdin=s.client_secret + "\n")

    assert "in the config file (readable by you only)" in ok(proc)
    assert s.client_secret not in proc.stdout + proc.stderr
    assert mode(ppauth_env.config_path) == 0o600
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert data["profiles"]["emu"]["client_secret"] == s.client_secret
    assert list(data["profiles"]["emu"])[:3] == ["tenant_id", "client_id", "client_secret"]

    shown = ok(ppauth("profile", "show", "emu"))
    as_json = ok(ppauth("profile", "show", "emu", "--json"))
    listed = json.loads(ok(ppauth("profile", "list", "--json")))
    for output in (shown, as_json, json.dumps(listed)):
        assert s.client_secret not in output
    assert "(hidden: stored in the file)" in shown
    assert json.loads(as_json)["settings"]["client_id"] == s.client_id
    assert listed["profiles"] == [
        {
            "name": "emu",
            "current": False,
            "active": False,
            "kind": "client secret",
            "client_id": s.client_id,
            "tenant_id": s.tenant_id,
        }
    ]
    token = ok(ppauth("token", "--profile", "emu")).strip()  # the file source uses it
    assert token.count(".") == 2 and emu.count("token") == 1


def test_a_secret_on_the_command_line_is_accepted_with_a_warning(ppauth_env):
    proc = ppauth(*add_args("cmdline", "--client-secret", SECRET, "--store-secret-in-file"))
    assert ok(proc)
    assert "visible to other users" in proc.stderr and SECRET not in proc.stderr


def test_a_reference_is_written_as_is(ppauth_env):
    ok(ppauth(*add_args("ref", "--client-secret", "keyring:ref:client_secret")))
    text = ppauth_env.config_path.read_text()
    assert 'client_secret = "keyring:ref:client_secret"' in text
    shown = json.loads(ok(ppauth("profile", "show", "ref", "--json")))
    assert shown["settings"]["client_secret"] == "keyring:ref:client_secret"


def test_settings_only_profile_and_validation(ppauth_env):
    ok(ppauth("profile", "add", "gov", "--cloud", "gcchigh", "--scope", "https://x/.default"))
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert data["profiles"]["gov"] == {"cloud": "gcchigh", "scope": "https://x/.default"}

    failed(ppauth("profile", "add", "x", "--client-secret", "keyring:x"), 2)  # no client id
    failed(ppauth("profile", "add", "x", "--client-id", "a", "--username", "u"), 2)
    line, hint = failed(ppauth("profile", "add", "gov"))
    assert "already exists" in line and "--replace" in hint


def test_edits_keep_comments_other_profiles_and_plugin_tables(ppauth_env):
    original = (
        "# my profiles\n"
        "[profiles.keep]\n"
        'client_id = "keep-app"  # the old app\n'
        "\n"
        "[profiles.keep.keyvault]\n"
        'vault_url = "https://kv.vault.azure.net"\n'
        "\n"
        "# about to go\n"
        "[profiles.old]\n"
        'cloud = "gcc"\n'
        "\n"
        "[profiles.old.keyring]\n"
        'service = "x"\n'
    )
    ppauth_env.write_config(original, mode=0o644)

    ok(ppauth("profile", "remove", "old"))
    text = ppauth_env.config_path.read_text()
    assert "# my profiles" in text and "# the old app" in text
    assert "[profiles.old" not in text and "[profiles.keep.keyvault]" in text
    assert mode(ppauth_env.config_path) == 0o600  # tightened on write

    ok(ppauth(*add_args("new", "--scope", "https://y/.default")))
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert set(data["profiles"]) == {"keep", "new"}
    assert data["profiles"]["keep"]["keyvault"] == {"vault_url": "https://kv.vault.azure.net"}
    assert "# the old app" in ppauth_env.config_path.read_text()

    ok(ppauth(*add_args("new", "--scope", "https://z/.default", "--replace")))
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert data["profiles"]["new"]["scope"] == "https://z/.default"

    text_listed = ok(ppauth("profile", "list"))
    assert "keep" in text_listed and "new" in text_listed


def test_remove_and_show_a_missing_profile(ppauth_env):
    line, hint = failed(ppauth("profile", "remove", "ghost"))
    assert "no profile 'ghost'" in line and "ppauth profile list" in hint
    failed(ppauth("profile", "show", "ghost"))


def test_a_broken_config_file_is_reported_not_overwritten(ppauth_env):
    ppauth_env.write_config("[profiles.a\n")
    line, _ = failed(ppauth(*add_args("b")))
    assert "not valid TOML" in line
    assert ppauth_env.config_path.read_text() == "[profiles.a\n"


def test_add_a_device_code_profile(ppauth_env):
    ok(ppauth(*add_args("me", "--device-code", "--username", "me@contoso.example")))
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert data["profiles"]["me"] == {
        "tenant_id": TENANT,
        "client_id": "app-1",
        "username": "me@contoso.example",
        "device_code": True,
    }
    (row,) = json.loads(ok(ppauth("profile", "list", "--json")))["profiles"]
    assert row["kind"] == "device code"


def test_add_a_managed_identity_profile(ppauth_env):
    ok(ppauth("profile", "add", "vm", "--managed-identity", "system"))
    ok(ppauth("profile", "add", "worker", "--managed-identity", "object_id:1234"))
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert data["profiles"]["vm"] == {"managed_identity": "system"}
    assert data["profiles"]["worker"] == {"managed_identity": "object_id:1234"}
    kinds = {
        r["name"]: r["kind"]
        for r in json.loads(ok(ppauth("profile", "list", "--json")))["profiles"]
    }
    assert kinds == {"vm": "managed identity", "worker": "managed identity"}


def test_a_workload_identity_profile_gets_a_token(ppauth_env, ppauth_emulator):
    emu = ppauth_emulator
    subject = "system:serviceaccount:jobs:nightly"
    app = emu.add_app(federated_subject=subject, name="nightly")
    token_file = ppauth_env.root / "federated-token"
    token_file.write_text(emu.federated_token(subject))
    args = ["profile", "add", "k8s", "--tenant-id", emu.sample.tenant_id]
    args += ["--client-id", app.client_id, "--federated-token-file", str(token_file)]
    args += ["--authority-host", emu.authority_host, "--ca-bundle", emu.ca_bundle]
    ok(ppauth(*args))
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert data["profiles"]["k8s"]["federated_token_file"] == str(token_file)
    (row,) = json.loads(ok(ppauth("profile", "list", "--json")))["profiles"]
    assert row["kind"] == "workload identity"

    token = ok(ppauth("token", "--profile", "k8s")).strip()
    assert token.count(".") == 2
    (grant,) = emu.requests("token")
    assert grant.client_id == app.client_id and grant.extra["client_auth"] == "federated"


def test_an_azure_pipelines_profile_gets_a_token_in_a_plain_script_step(
    ppauth_env, ppauth_emulator
):
    """``profile add --service-connection-id`` for a ``script:`` step (no AzureCLI@2 task
    to set AZURESUBSCRIPTION_*): the pipeline gives only the endpoint and its token."""
    emu = ppauth_emulator
    app = emu.add_app(federated_subject=emu.pipelines_subject("pp"), name="pp")
    variables = emu.azure_pipelines_env("pp")
    connection = variables["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"]
    args = ["profile", "add", "ado", "--tenant-id", app.tenant_id, "--client-id", app.client_id]
    args += ["--service-connection-id", connection, "--authority-host", emu.authority_host]
    args += ["--ca-bundle", emu.ca_bundle]
    ok(ppauth(*args))
    data = tomllib.loads(ppauth_env.config_path.read_text())
    assert data["profiles"]["ado"]["service_connection_id"] == connection
    (row,) = json.loads(ok(ppauth("profile", "list", "--json")))["profiles"]
    assert row["kind"] == "azure pipelines federation"

    ppauth_env.set(
        SYSTEM_OIDCREQUESTURI=variables["SYSTEM_OIDCREQUESTURI"],
        SYSTEM_ACCESSTOKEN=variables["SYSTEM_ACCESSTOKEN"],
    )
    proc = ppauth("token", "--profile", "ado")
    token = ok(proc).strip()
    assert token.count(".") == 2
    assert variables["SYSTEM_ACCESSTOKEN"] not in proc.stderr
    assert emu.count("pipelines_oidc") == 1
    (grant,) = emu.requests("token")
    assert grant.client_id == app.client_id and grant.extra["client_auth"] == "federated"


def test_a_github_profile_with_an_audience(ppauth_env):
    ok(ppauth(*add_args("gh", "--oidc-audience", "api://Contoso")))
    data = tomllib.loads(ppauth_env.config_path.read_text())

    assert data["profiles"]["gh"]["oidc_audience"] == "api://Contoso"
    (row,) = json.loads(ok(ppauth("profile", "list", "--json")))["profiles"]
    assert row["kind"] == "github actions federation"


def test_one_credential_per_profile_with_what_it_needs(ppauth_env):
    cases = {
        ("--device-code", "--client-secret", "keyring:x"): "are 2 credentials",
        ("--managed-identity", "system", "--password", "keyring:p"): "are 2 credentials",
        ("--federated-token-file", "/t", "--certificate-path", "/c.pem"): "are 2 credentials",
        ("--service-connection-id", "sc", "--client-secret", "keyring:x"): "are 2 credentials",
        ("--username", "u@x.example"): "--username needs --password (or --interactive",
        ("--password", "keyring:p"): "--username and --password go together",
    }
    for extra, message in cases.items():
        line, _ = failed(ppauth(*add_args("x", *extra)), 2)
        assert message in line, (extra, line)
    line, _ = failed(
        ppauth("profile", "add", "x", "--client-id", "a", "--federated-token-file", "/t"), 2
    )
    assert "needs --tenant-id" in line
    line, _ = failed(
        ppauth("profile", "add", "x", "--client-id", "a", "--service-connection-id", "sc"), 2
    )
    assert "needs --tenant-id" in line
    line, hint = failed(
        ppauth("profile", "add", "x", "--client-id", "a", "--managed-identity", "system"), 2
    )
    assert "not --client-id" in line and "--managed-identity CLIENT_ID" in hint
    line, _ = failed(ppauth("profile", "add", "x", "--device-code"), 2)
    assert "needs --client-id" in line
    assert not ppauth_env.config_path.exists()
