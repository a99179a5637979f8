"""Editing the TOML config file: safely, atomically, keeping what the user wrote.

- **Atomic, private**: the new text goes to a temp file created 0600 in the same
  directory, is fsync'd, parsed and validated exactly as the loader would, then
  ``os.replace``\\ d over the old file. A crash leaves the old file or the new one.
- **Serialised**: read-modify-write runs under an ``flock`` on the directory, so two
  ``ppauth profile add`` at once do not lose each other's profile.
- **Comments kept**: a new profile is appended as text and a removed one is cut out
  as text; the result is parsed and compared with the intended data, and only when
  they differ (an unusual layout) is the file rewritten from the data.
- **The active profile**: ``active_profile = "<name>"`` (``ppauth profile use``) is a
  top-level key, so it must come before the first table: it replaces the line already
  there (keeping its comment), or goes in above the first table and the comments that
  belong to it. Every other edit keeps it as it is.

No TOML writer is a dependency (tomllib only reads): :func:`dumps` covers what a
profile holds (strings, booleans, numbers, lists, ``{ ref = "..." }`` and plugin
sub-tables).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from requests_ppauth.cli.failures import CLIError
from requests_ppauth.config import ACTIVE_KEY, read_config, read_profiles

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_HEADER = re.compile(r"^\s*\[")
_COMMENT = re.compile(r"^\s*#")
# active_profile = "x" / 'x', and the comment after it: the line `use` rewrites
_ACTIVE_LINE = re.compile(
    rf"^[ \t]*{ACTIVE_KEY}[ \t]*=[ \t]*(?:\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*')[ \t]*(#[^\n]*)?$"
)


def key(name: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise."""
    return name if _BARE.match(name) else json.dumps(name)


def value(v: Any) -> str:
    """A TOML value (inline)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(v, list):
        return "[" + ", ".join(value(i) for i in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{key(k)} = {value(i)}" for k, i in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_subtable(v: Any) -> bool:
    return isinstance(v, Mapping) and set(v) != {"ref"}


def profile_text(name: str, settings: Mapping[str, Any]) -> str:
    """``[profiles.<name>]`` and its plugin sub-tables."""
    lines = [f"[profiles.{key(name)}]"]
    lines += [f"{key(k)} = {value(v)}" for k, v in settings.items() if not _is_subtable(v)]
    for sub, table in settings.items():
        if _is_subtable(table):
            lines += ["", f"[profiles.{key(name)}.{key(sub)}]"]
            lines += [f"{key(k)} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def dumps(profiles: Mapping[str, Mapping[str, Any]], active: str | None = None) -> str:
    """A whole config file."""
    head = f"{ACTIVE_KEY} = {value(active)}\n\n" if active is not None else ""
    return head + "\n".join(profile_text(n, s) for n, s in profiles.items())


def active_of(text: str) -> str | None:
    """The ``active_profile`` of ``text`` (a file :func:`read` has validated)."""
    if ACTIVE_KEY not in text:
        return None
    found = tomllib.loads(text).get(ACTIVE_KEY)
    return found if isinstance(found, str) else None


def _parses_to(text: str, expected: Mapping[str, Any], active: str | None) -> bool:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return (
        set(data) <= {"profiles", ACTIVE_KEY}
        and data.get("profiles", {}) == expected
        and data.get(ACTIVE_KEY) == active
    )


def with_profile(text: str, old: Mapping[str, Any], name: str, settings: Mapping[str, Any]) -> str:
    """``text`` with ``[profiles.<name>]`` appended (it must not be there yet)."""
    expected = {**old, name: dict(settings)}
    active = active_of(text)
    addition = profile_text(name, settings)
    candidate = (text.rstrip("\n") + "\n\n" if text.strip() else "") + addition
    return candidate if _parses_to(candidate, expected, active) else dumps(expected, active)


def without_profile(text: str, old: Mapping[str, Any], name: str) -> str:
    """``text`` with ``[profiles.<name>]`` and its sub-tables cut out."""
    expected = {k: v for k, v in old.items() if k != name}
    quoted = "|".join(re.escape(q) for q in {name, json.dumps(name), f"'{name}'"})
    own = re.compile(rf"^\s*\[\s*profiles\s*\.\s*(?:{quoted})\s*(?:\.[^\]]*)?\]\s*(?:#.*)?$")
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if _HEADER.match(line):
            skipping = bool(own.match(line))
        if not skipping:
            kept.append(line)
    candidate = re.sub(r"\n{3,}", "\n\n", "".join(kept))
    active = active_of(text)
    return candidate if _parses_to(candidate, expected, active) else dumps(expected, active)


def with_active(text: str, profiles: Mapping[str, Any], active: str | None) -> str:
    """``text`` with ``active_profile = "<active>"``, or without it for ``None``.

    A top-level key must precede every table, so a new line goes above the first table
    and the comment lines directly over it (they describe that table); a file's opening
    comment, set off by a blank line, stays first.
    """
    lines = text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if _HEADER.match(line)), len(lines))
    # only above the first table: a plugin's sub-table may have a key of the same name
    at = next((i for i in range(first) if _ACTIVE_LINE.match(lines[i])), None)
    new = f"{ACTIVE_KEY} = {value(active)}" if active is not None else None
    if at is not None:
        comment = _ACTIVE_LINE.match(lines[at])
        tail = f"  {comment.group(1)}" if comment and comment.group(1) and new else ""
        if new is None:
            del lines[at]
            blank_before = at == 0 or not lines[at - 1].strip()
            if at < len(lines) and not lines[at].strip() and blank_before:
                del lines[at]  # the blank line that set it off
        else:
            lines[at] = new + tail + "\n"
    elif new is not None:
        while first > 0 and _COMMENT.match(lines[first - 1]):
            first -= 1
        if first == len(lines) and lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.insert(first, new + "\n" + ("\n" if first < len(lines) else ""))
    candidate = re.sub(r"\n{3,}", "\n\n", "".join(lines))
    if candidate.strip() == "":
        candidate = ""
    expected = dict(profiles)
    return candidate if _parses_to(candidate, expected, active) else dumps(expected, active)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s directory (no lock file is left behind)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no directory locks
        yield
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read(path: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """The file's text and its validated profiles (empty when there is no file)."""
    found = read_profiles(path)
    if found is None:
        return "", {}
    return path.read_text("utf-8"), found[0]


def read_active(path: Path) -> str | None:
    """The file's validated ``active_profile`` (``None``: none, or no file)."""
    found = read_config(path)
    return None if found is None else found.active


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: fsync'd, validated first; 0600 when new, else the
    old mode with every bit for other users dropped (the file may hold secrets), so a
    user's stricter 0400 stays 0400 while a 0644 becomes 0600."""
    target = path.resolve() if path.is_symlink() else path
    try:
        mode = (stat.S_IMODE(target.stat().st_mode) & 0o600) | 0o400  # readable, to validate
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        read_profiles(Path(tmp))  # the loader's own validation: never write what it rejects
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def not_found(name: str, path: Path, profiles: Mapping[str, Any]) -> CLIError:
    """The error for a profile that is not in the file."""
    return CLIError(
        f"there is no profile {name!r} in {path}",
        f"profiles there: {', '.join(profiles) or 'none'} (`ppauth profile list`)",
    )
