"""Source precedence and the plugin system: built-ins, runtime plugins, lazy loading."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

import requests_ppauth
from requests_ppauth import (
    ClientSecret,
    ConfigurationError,
    NoCredentialError,
    PowerPlatformAuth,
    PPAuthError,
    SourceError,
    hookspecs,
)
from requests_ppauth import plugins as plugins_module
from requests_ppauth.config import load_profile
from requests_ppauth.plugins import PluginRegistrationError, Plugins

TESTS = Path(__file__).resolve().parent
TENANT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(autouse=True)
def _fresh_global_plugins(monkeypatch):
    """PowerPlatformAuth uses the process-wide manager: give each test its own."""
    monkeypatch.setattr(plugins_module, "_plugins", None)


def lookup(plugins: Plugins | None = None, profile: str = "default", order=None):
    env = dict(os.environ)
    return (plugins or Plugins(env)).find_credential(load_profile(profile, env), env, order=order)


def env_credential(ppauth_env) -> None:
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID="env-client", PPAUTH_CLIENT_SECRET="env-secret"
    )


def file_credential(ppauth_env, extra: str = "") -> None:
    ppauth_env.write_config(
        f'[profiles.default]\ntenant_id = "{TENANT}"\nclient_id = "file-client"\n'
        f'client_secret = "file-secret"\n{extra}'
    )


class ThirdSource:
    """A third-party source between env (10) and file (20)."""

    priority = 15

    def __init__(self, behaviour: str, name: str = "third") -> None:
        self.name = name
        self.behaviour = behaviour
        self.calls = 0

    def credential(self, request):
        self.calls += 1
        if self.behaviour == "credential":
            return ClientSecret(tenant_id=TENANT, client_id="third-client", secret="third-secret")
        if self.behaviour == "note":
            request.note("the vault is locked")
            return None
        if self.behaviour == "silent":
            return None
        if self.behaviour == "raise":
            raise SourceError(self.name, "third is configured but its vault is unreachable")
        return {"tenant_id": TENANT}  # "not-a-credential"


class SourcePlugin:
    def __init__(self, *sources: object) -> None:
        self.sources = sources

    @requests_ppauth.hookimpl
    def ppauth_register_sources(self, register):
        for source in self.sources:
            register(source)


def plugins_with(*sources: object) -> Plugins:
    plugins = Plugins(dict(os.environ))
    plugins.register(SourcePlugin(*sources), name="third-party")
    return plugins


# -- built-in precedence -------------------------------------------------------------------


def test_default_order_is_env_then_file():
    sources = Plugins().sources()

    assert [(s.name, s.priority) for s in sources] == [("env", 10), ("file", 20)]
    assert Plugins().plugin_names() == ["env", "file"]


def test_env_wins_when_both_have_credentials(ppauth_env):
    env_credential(ppauth_env)
    file_credential(ppauth_env)

    cred = lookup()

    assert (cred.source, cred.client_id, cred.secret) == ("env", "env-client", "env-secret")


def test_file_answers_when_env_is_empty(ppauth_env):
    file_credential(ppauth_env)

    assert lookup().source == "file"


def test_profile_sources_reverse_the_order(ppauth_env):
    env_credential(ppauth_env)
    file_credential(ppauth_env, 'sources = ["file", "env"]\n')

    cred = lookup()

    assert (cred.source, cred.secret) == ("file", "file-secret")


def test_profile_sources_can_exclude_a_source(ppauth_env):
    env_credential(ppauth_env)
    ppauth_env.write_config('[profiles.default]\nsources = ["file"]\n')

    with pytest.raises(NoCredentialError) as info:
        lookup()

    assert list(info.value.reasons) == ["file"]


@pytest.mark.parametrize(("order", "expected"), [(["env"], "env"), (["env", "file"], "env")])
def test_sources_argument_overrides_the_profile(ppauth_env, order, expected):
    env_credential(ppauth_env)
    file_credential(ppauth_env, 'sources = ["file", "env"]\n')

    cred = PowerPlatformAuth(sources=order)._find_credential()

    assert cred.source == expected
    assert cred.secret == "env-secret"


def test_sources_argument_only_asks_the_sources_named(ppauth_env):
    env_credential(ppauth_env)

    with pytest.raises(NoCredentialError) as info:
        PowerPlatformAuth(sources=["file"])._find_credential()

    assert list(info.value.reasons) == ["file"]


def test_empty_sources_asks_nobody(ppauth_env):
    env_credential(ppauth_env)

    with pytest.raises(NoCredentialError, match="none: every source is blocked or excluded"):
        PowerPlatformAuth(sources=[])._find_credential()


@pytest.mark.parametrize("where", ["argument", "profile"])
def test_unknown_source_name_lists_installed_sources(ppauth_env, where):
    env_credential(ppauth_env)
    if where == "profile":
        ppauth_env.write_config('[profiles.default]\nsources = ["env", "keyrnig"]\n')
        auth = PowerPlatformAuth()
    else:
        auth = PowerPlatformAuth(sources=["env", "keyrnig"])

    with pytest.raises(ConfigurationError) as info:
        auth._find_credential()

    message = str(info.value)
    assert "unknown credential source(s) 'keyrnig'" in message
    assert "installed: env, file" in message


# -- PPAUTH_DISABLE_PLUGINS ----------------------------------------------------------------


def test_disable_plugins_blocks_the_builtin_env_source(ppauth_env):
    env_credential(ppauth_env)
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="env,*,managed,github,azure_pipelines")
    plugins = Plugins()

    assert [s.name for s in plugins.sources()] == ["file"]
    assert "env" not in plugins.plugin_names()
    with pytest.raises(NoCredentialError) as info:
        lookup(plugins)
    assert list(info.value.reasons) == ["file"]


def test_disable_plugins_error_for_named_blocked_source(ppauth_env):
    env_credential(ppauth_env)
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS=" env , ,*,managed,github,azure_pipelines")

    with pytest.raises(ConfigurationError) as info:
        PowerPlatformAuth(sources=["env"])._find_credential()

    message = str(info.value)
    assert "unknown credential source(s) 'env'" in message
    assert "installed: file" in message
    assert "blocked by PPAUTH_DISABLE_PLUGINS: *, azure_pipelines, env, github, managed" in message


def test_disable_plugins_reads_the_environment_at_construction(ppauth_env):
    env_credential(ppauth_env)
    before = Plugins()
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="env,*,managed,github,azure_pipelines")

    assert lookup(before).source == "env"
    assert [s.name for s in Plugins().sources()] == ["file"]


def test_disable_every_builtin(ppauth_env):
    env_credential(ppauth_env)
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="env,file,*,managed,github,azure_pipelines")

    with pytest.raises(NoCredentialError) as info:
        lookup(Plugins())

    assert info.value.reasons == {}
    assert "every source is blocked" in str(info.value)


def test_disable_plugins_blocks_a_runtime_plugin_by_name(ppauth_env):
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="third-party,*,managed,github,azure_pipelines")
    plugins = Plugins()

    plugins.register(SourcePlugin(ThirdSource("credential")), name="third-party")

    assert [s.name for s in plugins.sources()] == ["env", "file"]


# -- a third-party source ---------------------------------------------------------------------


def test_third_party_source_is_ordered_by_priority():
    plugins = plugins_with(ThirdSource("silent"))

    assert [s.name for s in plugins.sources()] == ["env", "third", "file"]
    assert "third-party" in plugins.plugin_names()


def test_third_party_source_answers_before_file(ppauth_env):
    file_credential(ppauth_env)
    third = ThirdSource("credential")

    cred = lookup(plugins_with(third))

    assert (cred.source, cred.client_id) == ("third", "third-client")
    assert third.calls == 1


def test_env_answers_before_third_party_source(ppauth_env):
    env_credential(ppauth_env)
    file_credential(ppauth_env)
    third = ThirdSource("credential")

    assert lookup(plugins_with(third)).source == "env"
    assert third.calls == 0


def test_third_party_source_passes_with_a_note(ppauth_env):
    third = ThirdSource("note")

    with pytest.raises(NoCredentialError) as info:
        lookup(plugins_with(third))

    reasons = info.value.reasons
    assert list(reasons) == ["env", "third", "file"]
    assert reasons["third"] == "the vault is locked"
    assert "  - third: the vault is locked" in str(info.value)


def test_third_party_source_passing_lets_file_answer(ppauth_env):
    file_credential(ppauth_env)
    third = ThirdSource("note")

    assert lookup(plugins_with(third)).source == "file"
    assert third.calls == 1


def test_source_passing_without_a_note(ppauth_env):
    with pytest.raises(NoCredentialError) as info:
        lookup(plugins_with(ThirdSource("silent")))

    assert info.value.reasons["third"] == "passed"


def test_third_party_source_error_stops_the_chain(ppauth_env):
    file_credential(ppauth_env)

    with pytest.raises(SourceError) as info:
        lookup(plugins_with(ThirdSource("raise")))

    assert info.value.source == "third"
    assert str(info.value) == "[third] third is configured but its vault is unreachable"


def test_third_party_source_named_in_profile_order(ppauth_env):
    env_credential(ppauth_env)
    file_credential(ppauth_env, 'sources = ["file", "third"]\n')
    third = ThirdSource("credential")

    assert lookup(plugins_with(third)).source == "file"
    assert third.calls == 0


def test_source_returning_a_non_credential(ppauth_env):
    with pytest.raises(PluginRegistrationError, match="returned dict, not a requests_ppauth"):
        lookup(plugins_with(ThirdSource("not-a-credential")))


def test_unregister_removes_the_source(ppauth_env):
    file_credential(ppauth_env)
    plugins = plugins_with(ThirdSource("credential"))
    assert lookup(plugins).source == "third"

    plugins.unregister("third-party")

    assert [s.name for s in plugins.sources()] == ["env", "file"]
    assert lookup(plugins).source == "file"


def test_process_wide_plugins_are_shared_and_resettable():
    first = plugins_module.get_plugins()

    assert plugins_module.get_plugins() is first
    plugins_module.reset_plugins()
    assert plugins_module.get_plugins() is not first


# -- contract violations ----------------------------------------------------------------------


class NotASource:
    name = "broken"


class NotAResolver:
    name = "broken"
    schemes = ("broken",)


class ResolverPlugin:
    def __init__(self, resolver: object) -> None:
        self.resolver = resolver

    @requests_ppauth.hookimpl
    def ppauth_register_secret_resolvers(self, register):
        register(self.resolver)


def test_registering_a_non_source_is_an_error(ppauth_env):
    plugins = plugins_with(NotASource())

    with pytest.raises(PluginRegistrationError) as info:
        plugins.sources()

    assert "is not a credential source" in str(info.value)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, PPAuthError)
    with pytest.raises(PluginRegistrationError):
        lookup(plugins)


def test_registering_a_non_resolver_is_an_error(ppauth_env):
    plugins = Plugins()
    plugins.register(ResolverPlugin(NotAResolver()), name="bad-resolver")

    with pytest.raises(PluginRegistrationError, match="is not a secret resolver"):
        plugins.resolvers()


@pytest.mark.parametrize("name", ["env", "file"])
def test_duplicate_of_a_builtin_source_name(name):
    plugins = plugins_with(ThirdSource("credential", name=name))

    with pytest.raises(PluginRegistrationError) as info:
        plugins.sources()

    message = str(info.value)
    assert f"two plugins register a source named {name!r}" in message
    assert f"requests_ppauth.sources.{name}." in message
    assert "ThirdSource" in message


def test_duplicate_between_two_third_party_plugins():
    plugins = plugins_with(ThirdSource("silent"))
    plugins.register(SourcePlugin(ThirdSource("credential")), name="another")

    with pytest.raises(PluginRegistrationError, match="named 'third'"):
        plugins.sources()


class MisspeltPlugin:
    @requests_ppauth.hookimpl
    def ppauth_register_sourcez(self, register):
        raise AssertionError("never called")


class WrongArgumentPlugin:
    @requests_ppauth.hookimpl
    def ppauth_register_sources(self, registrar):
        raise AssertionError("never called")


def test_misspelt_hook_fails_at_register_time():
    plugins = Plugins()

    with pytest.raises(pluggy.PluginValidationError, match="ppauth_register_sourcez"):
        plugins.register(MisspeltPlugin(), name="misspelt")


def test_failed_registration_leaves_the_manager_usable(ppauth_env):
    file_credential(ppauth_env)
    plugins = Plugins()
    with pytest.raises(pluggy.PluginValidationError):
        plugins.register(MisspeltPlugin(), name="misspelt")

    plugins.register(SourcePlugin(ThirdSource("credential")), name="third-party")

    assert "misspelt" not in plugins.plugin_names()
    assert lookup(plugins).source == "third"


def test_hook_with_unknown_argument_fails_at_register_time():
    plugins = Plugins()

    with pytest.raises(pluggy.PluginValidationError, match="registrar"):
        plugins.register(WrongArgumentPlugin(), name="wrong-argument")

    assert "wrong-argument" not in plugins.plugin_names()


# -- lazy import -------------------------------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import importlib.metadata
    import json
    import os
    import sys

    config = os.path.realpath(os.environ["PPAUTH_CONFIG"])
    opened = []
    scans = []

    def audit(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            if os.path.realpath(os.fsdecode(args[0])) == config:
                opened.append(1)

    sys.addaudithook(audit)
    real_distributions = importlib.metadata.distributions

    def distributions(*args, **kwargs):
        scans.append(1)
        return real_distributions(*args, **kwargs)

    importlib.metadata.distributions = distributions

    def snapshot(stage):
        return {
            "stage": stage,
            "modules": sorted(
                m for m in sys.modules
                if m.split(".")[0] in ("msal", "filelock", "msal_extensions")
                or m in (
                    "requests_ppauth.plugins",
                    "requests_ppauth.config",
                    "requests_ppauth.sources.env",
                    "requests_ppauth.sources.file",
                )
            ),
            "config_reads": len(opened),
            "entry_point_scans": len(scans),
        }

    out = []
    import requests_ppauth
    out.append(snapshot("import"))
    auth = requests_ppauth.PowerPlatformAuth()
    requests_ppauth.PowerPlatformAuth(profile="other", sources=["env"], cloud="gcc")
    out.append(snapshot("construct"))
    # positive controls: the probes do see a config read and an entry-point scan
    try:
        auth._find_credential()
    except requests_ppauth.PPAuthError:
        pass
    out.append(snapshot("lookup"))
    print(json.dumps(out))
    """
)


def test_import_and_construction_are_lazy(ppauth_env, tmp_path):
    ppauth_env.write_config('[profiles.default]\ncloud = "public"\n')
    package_parent = Path(requests_ppauth.__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_parent), env.get("PYTHONPATH")]))

    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    imported, constructed, looked_up = json.loads(proc.stdout)
    for stage in (imported, constructed):
        assert stage["modules"] == [], stage
        assert stage["config_reads"] == 0, stage
        assert stage["entry_point_scans"] == 0, stage
    assert looked_up["config_reads"] >= 1
    assert looked_up["entry_point_scans"] >= 1
    assert "requests_ppauth.plugins" in looked_up["modules"]
    assert not any(m.startswith("msal") for m in looked_up["modules"])


# -- hook specifications ----------------------------------------------------------------------


def hook_specs() -> dict[str, object]:
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, marker)
    }


def test_hookspecs_are_found_and_registered():
    specs = hook_specs()
    hooks = Plugins().pm.hook

    assert set(specs) >= {"ppauth_register_sources", "ppauth_register_secret_resolvers"}
    assert all(getattr(hooks, name).has_spec() for name in specs)


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_is_documented_and_tested(name):
    spec = hook_specs()[name]
    doc = inspect.getdoc(spec)
    assert doc, f"hook {name} has no docstring"
    assert ":param register:" in doc
    implemented = [
        path.relative_to(TESTS)
        for path in sorted(TESTS.rglob("test_*.py"))
        if re.search(rf"^\s*def {re.escape(name)}\(", path.read_text(), re.M)
    ]
    assert implemented, f"no test implements hook {name}"
