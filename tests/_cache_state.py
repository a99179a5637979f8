"""The file cache's state read without the library, from its documented format: an
independent reader, so tests check the format and not the code against itself."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

CACHE_FILE = "tokens.json"


def load(directory: Path) -> dict[str, Any]:
    """The snapshot, then the log records after the offset it names; each log line is
    ``<crc32 as 8 hex digits> <json>``, and damaged lines are skipped."""
    data = json.loads((directory / CACHE_FILE).read_bytes())
    assert isinstance(data, dict)
    pointer = data.pop("PPAuthLog")
    raw = (directory / (CACHE_FILE + ".log")).read_bytes()
    header = json.loads(raw.split(b"\n")[1][9:])
    assert header == {"log": pointer["log"]}
    for line in raw[pointer["offset"] :].split(b"\n"):
        if not line or zlib.crc32(line[9:]) != int(line[:8], 16):
            continue
        for section, key, value, if_secret in json.loads(line[9:])["ops"]:
            items = data.setdefault(section, {})
            if value is not None:
                items[key] = value
            elif if_secret is None or (items.get(key) or {}).get("secret") == if_secret:
                items.pop(key, None)
    return data


def on_disk(directory: Path) -> bytes:
    """Every byte the cache keeps: a removed secret must not be anywhere in it."""
    return b"".join(p.read_bytes() for p in sorted(directory.glob(CACHE_FILE + "*")) if p.is_file())
