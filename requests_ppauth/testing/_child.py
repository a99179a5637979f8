"""A child process spoken to in lines, for tests that need real processes: its stdout
as a queue of lines (read by a thread, so every wait is bounded), its stderr kept for
the failure message, ``ready`` / ``go`` as a start barrier, and a JSON line to end."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any


class LineChild:
    """``argv`` started with pipes; ``name`` goes into every failure message."""

    def __init__(
        self,
        argv: Sequence[str],
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        umask: int = -1,
    ) -> None:
        self.name = name
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(  # noqa: S603 - the test's own interpreter and module
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=None if env is None else dict(env),
            umask=umask,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def line(self, timeout: float = 60) -> str:
        """The next stdout line; AssertionError (with the child's stderr) if none comes."""
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            item = None
        if item is None:
            self.kill()
            raise AssertionError(
                f"{self.name}: expected a line within {timeout} s, got "
                f"{'none' if self.proc.returncode is None else 'exit ' + str(self.proc.returncode)}"
                f"; its stderr:\n{self.stderr()}"
            )
        return item

    def expect(self, want: str, timeout: float = 60) -> None:
        got = self.line(timeout)
        assert got == want, (
            f"{self.name}: expected {want!r}, got {got!r}; its stderr:\n{self.stderr()}"
        )

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise AssertionError(
                f"{self.name} went away ({exc}); its stderr:\n{self.stderr()}"
            ) from None

    def ready(self, timeout: float = 60) -> None:
        self.expect("ready", timeout)

    def go(self) -> None:
        self.send("go")

    def result(self, timeout: float = 60) -> dict[str, Any]:
        """The JSON line the child ends with; it must then exit 0."""
        line = self.line(timeout)
        try:
            data: dict[str, Any] = json.loads(line)
        except ValueError:
            raise AssertionError(
                f"{self.name}: expected a JSON result, got {line!r}; its stderr:\n{self.stderr()}"
            ) from None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"{self.name}: expected exit 0, got {code}; its stderr:\n{self.stderr()}"
        return data

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)

    def close(self) -> None:
        self.kill()
        self._pump_thread.join(10)  # it ends at EOF, so stdout can be closed under it
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()
