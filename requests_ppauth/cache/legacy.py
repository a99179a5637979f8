"""Reading the token cache of requests-ppauth 0.1 once, to convert it.

That cache was ``tokens.json`` (msal's sections plus ``PPAuthToken``, and a pointer
``{"PPAuthLog": {"log": id, "offset": n}}``) and a log ``tokens.json.log`` of lines
``<crc32 hex> {"ops": [[section, key, value, if_secret], ...]}``; a compactor killed
between its two renames left the snapshot's log at ``tokens.json.log.next``. Its
writers take ``tokens.json.lock`` shared to append and exclusively to swap the log,
so holding it exclusively here means no 0.1 process is writing while we read, and
none has a half-done write we would miss.

What carries over: every ``PPAuthToken`` entry (the access tokens), and msal's
refresh tokens, accounts, id tokens and app metadata, sorted into partitions by
client and authority host. msal's own ``AccessToken`` section is not carried: each
of its entries was a copy of a ``PPAuthToken`` entry, and access tokens are now
kept once. The old files are removed once the new cache has committed them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from requests_ppauth.cache.keys import (
    ACCESS_TOKEN_PREFIX,
    FIELD_SEPARATOR,
    partition_key,
)
from requests_ppauth.cache.protocol import Op

SNAPSHOT = "tokens.json"
LOG = SNAPSHOT + ".log"
NEXT = LOG + ".next"
LOCK = SNAPSHOT + ".lock"
OLDER = (SNAPSHOT + ".journal", SNAPSHOT + ".committed")  # 0.0's journal: tokens too
OUR_SECTION = "PPAuthToken"
MSAL_KEPT = ("RefreshToken", "IdToken", "AppMetadata")  # by client; accounts follow them


@dataclass
class Legacy:
    """The converted entries of a 0.1 cache, and what could not be used."""

    directory: Path
    ops: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def remove(self) -> None:
        """Delete the old files (call once their entries are committed elsewhere)."""
        for name in (SNAPSHOT, LOG, NEXT, *OLDER):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / name)
        for tmp in self.directory.glob(f".{SNAPSHOT}.*.tmp"):  # a 0.1 compactor's
            with contextlib.suppress(OSError):
                tmp.unlink()


def _present(directory: Path) -> bool:
    return any((directory / name).exists() for name in (SNAPSHOT, LOG, NEXT, *OLDER))


@contextlib.contextmanager
def held(directory: Path) -> Iterator[Legacy | None]:
    """The 0.1 cache in ``directory`` converted (None if there is none), read and
    yielded while holding its log lock exclusively."""
    if not _present(directory):
        yield None
        return
    from requests_ppauth.cache.locks import exclusive

    with exclusive(directory / LOCK, 10.0):
        legacy = Legacy(directory)
        sections = _read(directory, legacy)
        legacy.ops = convert(sections)
        yield legacy


def _set_aside(directory: Path, name: str, legacy: Legacy, why: str) -> None:
    aside = directory / f"{name}.corrupt-{int(time.time())}-{uuid.uuid4().hex[:8]}"
    with contextlib.suppress(FileNotFoundError):
        os.replace(directory / name, aside)
        legacy.problems.append(
            f"old token cache file {directory / name} {why}; moved it to {aside}"
        )


def _read(directory: Path, legacy: Legacy) -> dict[str, Any]:
    """The 0.1 state: the snapshot, then its log's records after the pointer."""
    try:
        data = json.loads((directory / SNAPSHOT).read_bytes())
    except FileNotFoundError:
        return {}
    except (UnicodeDecodeError, ValueError):
        _set_aside(directory, SNAPSHOT, legacy, "could not be parsed")
        return {}
    if not isinstance(data, dict):
        _set_aside(directory, SNAPSHOT, legacy, "is not a JSON object")
        return {}
    state = {k: dict(v) for k, v in data.items() if isinstance(v, dict)}
    pointer = state.pop("PPAuthLog", None)
    if not (
        isinstance(pointer, dict)
        and isinstance(pointer.get("log"), str)
        and isinstance(pointer.get("offset"), int)
    ):
        return state
    for name in (LOG, NEXT):  # NEXT: a compactor died between its two renames
        try:
            raw = (directory / name).read_bytes()
        except FileNotFoundError:
            continue
        records = _lines(raw)
        if records[:1] == [{"log": pointer["log"]}] and len(raw) >= pointer["offset"]:
            for record in _lines(raw[pointer["offset"] :]):
                _apply(state, record)
            break
    return state


def _lines(raw: bytes) -> list[Any]:
    """The payloads of the intact lines (``<crc32 hex> <json>``); torn ones skipped."""
    payloads = []
    for line in raw[: raw.rfind(b"\n") + 1].split(b"\n"):
        if len(line) < 10 or line[8:9] != b" ":
            continue
        try:
            if zlib.crc32(line[9:]) == int(line[:8], 16):
                payloads.append(json.loads(line[9:]))
        except (ValueError, UnicodeDecodeError):
            continue
    return payloads


def _apply(state: dict[str, Any], record: Any) -> None:
    if not isinstance(record, dict) or not isinstance(record.get("ops"), list):
        return  # the header, or something else
    for op in record["ops"]:
        if not (isinstance(op, list) and len(op) == 4 and isinstance(op[0], str)):
            continue
        section, key, value, if_secret = op
        items = state.setdefault(section, {})
        if value is not None:
            items[key] = value
        elif if_secret is None or (items.get(key) or {}).get("secret") == if_secret:
            items.pop(key, None)


def convert(state: dict[str, Any]) -> list[Op]:
    """Ops that put a 0.1 state's entries into the new layout (see module docstring)."""
    ops: list[Op] = []
    for entry_id, entry in state.get(OUR_SECTION, {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("secret"), str):
            ops.append(Op(ACCESS_TOKEN_PREFIX + entry_id, entry))
    partitions: dict[str, dict[str, Any]] = {}
    homes: dict[tuple[str, str], set[str]] = {}  # (environment, home account) -> partitions
    for section in MSAL_KEPT:
        for key, item in state.get(section, {}).items():
            if not isinstance(item, dict):
                continue
            env = str(item.get("environment") or "").lower()
            pk = partition_key(env, str(item.get("client_id") or ""))
            partitions.setdefault(pk, {})[section + FIELD_SEPARATOR + key] = item
            if item.get("home_account_id"):
                homes.setdefault((env, str(item["home_account_id"])), set()).add(pk)
    for key, item in state.get("Account", {}).items():
        if not isinstance(item, dict):
            continue
        where = (str(item.get("environment") or "").lower(), str(item.get("home_account_id")))
        for pk in homes.get(where, ()):  # an account without tokens of any app is dropped
            partitions[pk]["Account" + FIELD_SEPARATOR + key] = item
    ops += [Op(pk, fields=fields) for pk, fields in sorted(partitions.items())]
    return ops
