"""docs/plugins.md says what the code does: the built-in sources and their priorities,
the priorities of this repository's plugins, and a section for every hook."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from requests_ppauth import hookspecs
from requests_ppauth.plugins import BUILTINS, Plugins

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def documented_builtins() -> list[tuple[str, str, int]]:
    rows = re.findall(
        r"^\| `([\w-]+)` \| `([\w-]+)` \| (\d+) \|", section("The built-in sources"), re.M
    )
    return [(name, plugin, int(priority)) for name, plugin, priority in rows]


def registered_builtins() -> list[tuple[str, str, int]]:
    plugins = Plugins({"PPAUTH_DISABLE_PLUGINS": "*"})  # built-ins only
    return [(s.name, plugins.plugin_of(s.name).name, s.priority) for s in plugins.sources()]


def test_the_builtin_sources_table_matches_the_code():
    documented, registered = documented_builtins(), registered_builtins()

    assert documented == registered, (
        f"docs/plugins.md lists {documented}, the code registers {registered} (in the order asked)"
    )
    assert {plugin for _, plugin, _ in registered} == {m.rsplit(".", 1)[1] for m in BUILTINS}


def test_the_intro_counts_the_builtins():
    intro = DOC.read_text().split("\n## ", 1)[0]
    count = NUMBERS[len(registered_builtins())]

    assert f"requests-ppauth ships {count}" in intro, intro


def test_the_priorities_of_this_repositorys_plugins():
    """The sentence naming the plugins' priorities agrees with the installed plugins."""
    line = next(
        ln
        for ln in section("The built-in sources").splitlines()
        if ln.startswith("The plugins in this repository")
    )
    claimed = {name: int(p) for name, p in re.findall(r"`(\w+)` (\d+)", line)}
    plugins = Plugins({"PPAUTH_DISABLE_PLUGINS": "managed"})
    actual = {s.name: s.priority for s in plugins.sources()}
    missing = sorted(set(claimed) - set(actual))
    if missing:
        pytest.skip(f"plugins not installed: {missing}")

    assert claimed, line
    assert {n: actual[n] for n in claimed} == claimed


def hook_names() -> list[str]:
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, marker)
    )


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_section(name):
    hooks = section("7. Every hook")

    assert f"\n### {name}\n" in hooks, f"docs/plugins.md section 7 has no '### {name}'"
    body = hooks.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
    assert "register(" in body, f"the section on {name} does not show register(...)"


def test_no_section_for_a_hook_that_does_not_exist():
    documented = re.findall(r"^### (ppauth_\w+)$", section("7. Every hook"), re.M)

    assert sorted(documented) == hook_names()
