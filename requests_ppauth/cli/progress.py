"""A progress bar on stderr, written by hand (no dependency for ten lines of output).

Live (redrawn in place, at most ten times a second) when stderr is a terminal or
``--progress`` asks for it; otherwise a single plain line when the work ends, so
logs and CI output stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
INTERVAL = 0.1


class Progress:
    """``update(done)`` as work completes, then ``finish()``."""

    def __init__(
        self, total: int, unit: str, *, live: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self.total = max(total, 1)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.started = time.monotonic()
        self.done = 0
        self._drawn = 0.0

    def update(self, done: int) -> None:
        """Record progress; redraw if live and due."""
        self.done = done
        now = time.monotonic()
        if self.live and (now - self._drawn >= INTERVAL or done >= self.total):
            self._drawn = now
            self.stream.write("\r" + self.line(now))
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """``[#########.........] 123/400 calls  1.2 s``."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        filled = int(WIDTH * min(self.done, self.total) / self.total)
        bar = "#" * filled + "." * (WIDTH - filled)
        return f"[{bar}] {self.done}/{self.total} {self.unit}  {elapsed:.1f} s"

    def finish(self) -> None:
        """End the live line, or write the one plain line."""
        if self.live:
            self.stream.write("\r" + self.line() + "\n")
        else:
            elapsed = time.monotonic() - self.started
            self.stream.write(f"{self.done}/{self.total} {self.unit} in {elapsed:.1f} s\n")
        self.stream.flush()
