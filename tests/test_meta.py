"""The project's own promises: CI runs the README's command; lint and types are clean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```(?:sh|bash|console)?\n(.+?)\n```", text, re.S)
    assert match, "README.md must hold the test command after <!-- test-command -->"
    return match.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert lines[-1].strip() == readme_test_command()


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_code_is_clean(argv):
    tool = Path(sys.executable).parent / argv[0]
    cmd = [str(tool), *argv[1:]] if tool.exists() else [sys.executable, "-m", *argv]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_emulator_example_runs():
    """The README's "Testing your code without a tenant" example is real code."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Testing your code without a tenant", 1)[1]
    code = re.search(r"```python\n(.+?)\n```", section, re.S)
    assert code, "the section lost its example"
    exec(compile(code.group(1), "README.md", "exec"), {})  # noqa: S102 - our own README
