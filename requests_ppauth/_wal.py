"""The cache's write-ahead log: how records are framed, checked and found again.

The log is a file of lines ``<crc32 as 8 hex digits> <compact JSON>``. Every write
is one ``write`` of ``"\\n" + line + "\\n"`` with ``O_APPEND``, so:

- a reader that sees a write still in progress sees a prefix of it: the bytes after
  the last newline are not consumed yet and are read again next time;
- a writer killed in the middle of a write leaves a fragment that the next write's
  leading newline ends, so the fragment is a line of its own that fails its
  checksum and is skipped; it never swallows the record after it;
- JSON escapes newlines inside strings, so a record is always exactly one line.

The first line of a log is its header, ``{"log": "<id>"}``: the snapshot
(``tokens.json``) names the log and the offset it has folded in up to, and the id
tells a reader whether the log it opened is that one.
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from typing import Any

HEADER_KEY = "log"


def frame(payload: Any) -> bytes:
    """One write's bytes for ``payload``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return b"\n%08x %s\n" % (zlib.crc32(body), body)


def new_header() -> tuple[str, bytes]:
    """A new log's id and its header line (always the same length)."""
    log_id = uuid.uuid4().hex
    return log_id, frame({HEADER_KEY: log_id})


def check(line: bytes) -> Any | None:
    """The payload of one line, or None if it is damaged (torn, or not ours)."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return None
    body = line[9:]
    if zlib.crc32(body) != crc:
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def parse(raw: bytes) -> tuple[list[Any], int, int]:
    """Payloads of the whole lines in ``raw``, bytes consumed, and damaged lines seen.

    Only bytes up to the last newline are consumed: what follows may be a write
    still under way.
    """
    end = raw.rfind(b"\n") + 1
    payloads: list[Any] = []
    damaged = 0
    for line in raw[:end].split(b"\n"):
        if not line:
            continue
        payload = check(line)
        if payload is None:
            damaged += 1
        else:
            payloads.append(payload)
    return payloads, end, damaged


def pread(fd: int, size: int, offset: int) -> bytes:
    """``os.pread``, or seek and read where there is none (Windows)."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, size)  # pragma: no cover


def read_header(fd: int) -> tuple[str | None, int]:
    """The id of the log open on ``fd`` and where its records start (None: no header)."""
    head = pread(fd, 256, 0)
    payloads, end, _ = parse(head[: head.find(b"\n", 1) + 1])
    if len(payloads) == 1 and isinstance(payloads[0], dict):
        log_id = payloads[0].get(HEADER_KEY)
        if isinstance(log_id, str):
            return log_id, end
    return None, 0
