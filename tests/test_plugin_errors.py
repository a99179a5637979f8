"""A plugin's faults are reported as the plugin's: named, explained, and blockable.

Plugins registered in-process (``Plugins.register``) raise on a fault: the code that
registered them is right there. Plugins installed through an entry point (real
distributions, written to a directory put on ``sys.path``) are skipped with a warning
naming them, and every other source keeps working. A source that crashes inside
``credential()`` stops the lookup with an error naming it and its plugin.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pluggy
import pytest

import requests_ppauth
from requests_ppauth import ClientSecret, PPAuthError
from requests_ppauth import plugins as plugins_module
from requests_ppauth.cli.failures import describe
from requests_ppauth.config import load_profile
from requests_ppauth.errors import PluginError
from requests_ppauth.plugins import (
    PluginHookError,
    PluginRegistrationError,
    Plugins,
    PluginWarning,
)

TENANT = "11111111-2222-3333-4444-555555555555"
INSTALLED = sorted(ep.name for ep in importlib.metadata.entry_points(group="requests_ppauth"))


@pytest.fixture(autouse=True)
def _fresh_global_plugins(monkeypatch):
    monkeypatch.setattr(plugins_module, "_plugins", None)


def env_credential(ppauth_env) -> None:
    ppauth_env.set(
        PPAUTH_TENANT_ID=TENANT, PPAUTH_CLIENT_ID="env-client", PPAUTH_CLIENT_SECRET="env-secret"
    )


def lookup(plugins: Plugins, order=None):
    env = dict(os.environ)
    return plugins.find_credential(load_profile("default", env), env, order=order)


class Source:
    def __init__(self, name="third", priority=15, behaviour="credential") -> None:
        self.name = name
        self.priority = priority
        self.behaviour = behaviour

    def credential(self, request):
        if self.behaviour == "boom":
            raise RuntimeError("boom")
        if self.behaviour == "keyerror":
            return {}["client_id"]
        return ClientSecret(tenant_id=TENANT, client_id="third-client", secret="third-secret")


class Registers:
    def __init__(self, *things) -> None:
        self.things = things

    @requests_ppauth.hookimpl
    def ppauth_register_sources(self, register):
        for thing in self.things:
            register(thing)


class ReturnsAList:
    @requests_ppauth.hookimpl
    def ppauth_register_sources(self, register):
        return [Source()]


class Raises:
    @requests_ppauth.hookimpl
    def ppauth_register_sources(self, register):
        raise RuntimeError("boom in the hook")


class Misspelt:
    @requests_ppauth.hookimpl
    def ppauth_register_source(self, register):
        raise AssertionError("never called")


def manager(ppauth_env, plugin, name="bad") -> Plugins:
    plugins = Plugins(dict(os.environ))
    plugins.register(plugin, name=name)
    return plugins


def assert_names_the_plugin(error: PluginError, name: str, *, what: str) -> None:
    message = str(error)
    assert isinstance(error, PPAuthError), type(error)
    assert f"plugin {name!r}" in message, message
    assert what in message, f"expected {what!r} in: {message}"
    assert f"PPAUTH_DISABLE_PLUGINS={name}" in error.hint, error.hint
    line, hint = describe(error)
    assert "please report" not in (line + hint).lower(), (line, hint)
    assert f"PPAUTH_DISABLE_PLUGINS={name}" in hint, hint
    assert "unexpected" not in line, line


# -- in-process plugins: the fault raises, naming the plugin ----------------------------------


def test_a_hook_returning_a_list_is_an_error_naming_the_plugin_and_hook(ppauth_env):
    plugins = manager(ppauth_env, ReturnsAList(), name="listy")

    with pytest.raises(PluginRegistrationError) as info:
        plugins.sources()

    assert_names_the_plugin(info.value, "listy", what="ppauth_register_sources")
    assert "returned a list instead of calling register(...)" in str(info.value)
    assert info.value.hook == "ppauth_register_sources"


def test_a_misspelt_hook_suggests_the_right_one(ppauth_env):
    plugins = Plugins(dict(os.environ))

    with pytest.raises(PluginHookError) as info:
        plugins.register(Misspelt(), name="typo")

    error = info.value
    assert isinstance(error, pluggy.PluginValidationError)  # what pluggy users catch
    assert (
        "plugin 'typo' (registered in-process) implements an unknown hook "
        "'ppauth_register_source' (did you mean 'ppauth_register_sources'?)"
    ) in str(error)
    assert_names_the_plugin(error, "typo", what="unknown hook")
    assert "typo" not in plugins.plugin_names()


def test_an_exception_in_a_hook_names_the_plugin(ppauth_env):
    plugins = manager(ppauth_env, Raises(), name="raiser")

    with pytest.raises(PluginRegistrationError) as info:
        plugins.sources()

    assert_names_the_plugin(info.value, "raiser", what="raised RuntimeError: boom in the hook")


def test_a_class_registered_instead_of_an_instance(ppauth_env):
    plugins = manager(ppauth_env, Registers(Source), name="classy")

    with pytest.raises(PluginRegistrationError) as info:
        plugins.sources()

    assert_names_the_plugin(
        info.value, "classy", what="registered the class Source, not an instance"
    )
    assert "register(Source())" in str(info.value)


def test_a_string_priority(ppauth_env):
    plugins = manager(ppauth_env, Registers(Source(priority="50")), name="stringy")

    with pytest.raises(PluginRegistrationError) as info:
        plugins.sources()

    assert_names_the_plugin(info.value, "stringy", what="priority '50', a str")
    assert info.value.source == "third"


def test_a_non_source_says_what_it_lacks(ppauth_env):
    class Half:
        name = "half"

    plugins = manager(ppauth_env, Registers(Half()), name="half")

    with pytest.raises(PluginRegistrationError) as info:
        plugins.sources()

    assert "missing: priority, credential" in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("behaviour", "what"),
    [("boom", "raised RuntimeError: boom"), ("keyerror", "raised KeyError: 'client_id'")],
)
def test_a_crash_in_credential_names_the_source_and_plugin(ppauth_env, behaviour, what):
    plugins = manager(ppauth_env, Registers(Source(behaviour=behaviour)), name="crashy")

    with pytest.raises(PluginError) as info:
        lookup(plugins)

    error = info.value
    assert "source 'third' of plugin 'crashy'" in str(error), str(error)
    assert_names_the_plugin(error, "crashy", what=f"{what} in credential()")
    assert error.source == "third"
    assert isinstance(error.__cause__, RuntimeError | KeyError)


def test_a_crashing_source_after_the_answer_is_never_asked(ppauth_env):
    env_credential(ppauth_env)
    plugins = manager(ppauth_env, Registers(Source(priority=50, behaviour="boom")))

    assert lookup(plugins).source == "env"


def test_blocking_the_bad_plugin_by_name(ppauth_env):
    env_credential(ppauth_env)
    ppauth_env.set(PPAUTH_DISABLE_PLUGINS="*,managed,github,azure_pipelines,crashy")
    plugins = manager(ppauth_env, Registers(Source(priority=5, behaviour="boom")), name="crashy")

    assert "crashy" not in plugins.plugin_names()
    assert lookup(plugins).source == "env"


# -- installed plugins: skipped with a warning, the others keep working -------------------------

_counter = itertools.count()


def install(site: Path, name: str, code: str) -> str:
    """A real distribution in ``site``: a module and a dist-info whose entry point names it."""
    module = f"ppauth_test_plugin_{name.replace('-', '_')}_{os.getpid()}_{next(_counter)}"
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    dist = site / f"requests_ppauth_test_{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: requests-ppauth-test-{name}\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(f"[requests_ppauth]\n{name} = {module}\n")
    return module


GOOD = """
    import requests_ppauth
    from requests_ppauth import ClientSecret

    class Good:
        name = "good"
        priority = 50

        def credential(self, request):
            request.note("the good source has nothing here")
            return None

    @requests_ppauth.hookimpl
    def ppauth_register_sources(register):
        register(Good())
"""

BAD = {
    "misspelt": """
        import requests_ppauth

        @requests_ppauth.hookimpl
        def ppauth_register_source(register):
            pass
    """,
    "returns-list": """
        import requests_ppauth

        class S:
            name = "listed"
            priority = 5

            def credential(self, request):
                return None

        @requests_ppauth.hookimpl
        def ppauth_register_sources(register):
            return [S()]
    """,
    "import-error": """
        raise ImportError("no module named 'gnupg'")
    """,
    "raises": """
        import requests_ppauth

        @requests_ppauth.hookimpl
        def ppauth_register_sources(register):
            raise RuntimeError("boom")
    """,
}

WHAT = {
    "misspelt": "implements an unknown hook 'ppauth_register_source' (did you mean "
    "'ppauth_register_sources'?)",
    "returns-list": "returned a list instead of calling register",
    "import-error": "cannot be imported: ImportError: no module named 'gnupg'",
    "raises": "raised RuntimeError: boom",
}


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_broken_installed_plugin_is_skipped_with_a_warning(ppauth_env, site, kind):
    env_credential(ppauth_env)
    install(site, kind, BAD[kind])
    install(site, "good", GOOD)
    ppauth_env.set(
        PPAUTH_DISABLE_PLUGINS=",".join([*INSTALLED, "managed", "github", "azure_pipelines"])
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        plugins = Plugins(dict(os.environ))
        names = [s.name for s in plugins.sources()]

    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    mine = [m for m in messages if f"plugin {kind!r}" in m]
    assert len(mine) == 1, messages
    message = mine[0]
    assert f"distribution requests-ppauth-test-{kind}" in message, message
    assert f"entry point {kind} = ppauth_test_plugin_" in message, message
    assert WHAT[kind] in message, message
    assert f"PPAUTH_DISABLE_PLUGINS={kind}" in message, message
    assert "please report" not in message
    assert names == ["env", "file", "good"], names
    assert lookup(plugins).source == "env"
    assert kind in plugins.skipped


def test_blocking_the_broken_installed_plugin_silences_it(ppauth_env, site):
    env_credential(ppauth_env)
    install(site, "misspelt", BAD["misspelt"])
    ppauth_env.set(
        PPAUTH_DISABLE_PLUGINS=",".join(
            [*INSTALLED, "managed", "github", "azure_pipelines", "misspelt"]
        )
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        plugins = Plugins(dict(os.environ))
        assert lookup(plugins).source == "env"


def test_ppauth_sources_survives_a_broken_plugin(ppauth_env, site):
    """Through the real command: the broken plugin is named on stderr with the switch that
    blocks it, and env still answers."""
    env_credential(ppauth_env)
    install(site, "misspelt", BAD["misspelt"])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env["PPAUTH_DISABLE_PLUGINS"] = ",".join([*INSTALLED, "managed", "github", "azure_pipelines"])

    proc = subprocess.run(
        [sys.executable, "-m", "requests_ppauth.cli", "sources"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ANSWERS" in proc.stdout and "env" in proc.stdout, proc.stdout
    assert "unknown hook 'ppauth_register_source'" in proc.stderr, proc.stderr
    assert "PPAUTH_DISABLE_PLUGINS=misspelt" in proc.stderr, proc.stderr
    assert "please report" not in proc.stderr, proc.stderr
    assert "skipped: plugin 'misspelt'" in proc.stdout, proc.stdout


# -- cache backends and commands ------------------------------------------------------------


class HalfCache:
    """A backend with get/apply/read_all/key_lock but no try_key_lock and no location."""

    def get(self, keys):
        return {}

    def apply(self, ops):
        pass

    def read_all(self):
        return {}

    def key_lock(self, key, timeout):
        raise AssertionError("never used")


class HalfCachePlugin:
    @requests_ppauth.hookimpl
    def ppauth_register_cache_backends(self, register):
        register("half", lambda options: HalfCache())


def test_a_cache_backend_missing_methods_says_which(ppauth_env):
    from requests_ppauth import ConfigurationError
    from requests_ppauth.cache.select import resolve

    plugins_module.get_plugins().register(HalfCachePlugin(), name="half-cache")

    with pytest.raises(ConfigurationError) as info:
        resolve("half", environ={})

    message = str(info.value)
    assert "made a HalfCache, which is not a CacheBackend: it lacks try_key_lock, location" in (
        message
    ), message


class NotCallableCommands:
    @requests_ppauth.hookimpl
    def ppauth_register_commands(self, register):
        register("not a function")


def test_a_non_callable_command_adder_names_the_plugin(ppauth_env):
    plugins = manager(ppauth_env, NotCallableCommands(), name="cmds")

    with pytest.raises(PluginRegistrationError) as info:
        plugins.command_adders()

    assert_names_the_plugin(info.value, "cmds", what="in its hook ppauth_register_commands")
    assert "'not a function' is not callable" in str(info.value)
