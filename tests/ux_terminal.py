"""Run the CLI in a real pseudo-terminal and read the screen a user would see.

The output goes through pyte, a VT100 emulator, so cursor movements and erasures are applied
as a terminal applies them: what the tests assert on is the final screen text, not the
byte stream (a display that leaves stale rows behind fails them).
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import sys
import termios
import threading
import time
from collections.abc import Callable, Sequence

import pyte


class Terminal:
    """``dandiget ARGS`` in a ``cols`` x ``rows`` terminal (tall enough that nothing scrolls)."""

    def __init__(self, args: Sequence[str], *, cols: int = 80, rows: int = 120,
                 env: dict[str, str] | None = None, cwd: str | None = None):
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.cond = threading.Condition()
        self.eof = False
        full_env = {**os.environ, **(env or {}), "COLUMNS": str(cols), "LINES": str(rows),
                    "TERM": "xterm-256color"}
        full_env.pop("NO_COLOR", None)
        argv = [sys.executable, "-m", "dandiget.cli", *args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: size its terminal before anything can ask for it
            try:
                fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                if cwd:
                    os.chdir(cwd)
                os.execvpe(argv[0], argv, full_env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.status: int | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.raw += data
                self.stream.feed(data)
                self.cond.notify_all()

    def wait_for(self, predicate: Callable[[Terminal], bool], timeout: float = 60) -> None:
        """Block until ``predicate(self)`` holds (checked on every chunk of output)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    if predicate(self):
                        return
                    raise AssertionError("the terminal never showed what was expected:\n"
                                         + self.text())
                self.cond.wait(left)

    def send(self, data: bytes) -> None:
        """Type into the terminal (``b"\\x03"`` is Ctrl-C: SIGINT from the line discipline)."""
        os.write(self.fd, data)

    def wait(self, timeout: float = 120) -> int:
        """The exit code, once the program ended and all its output was read (the terminal
        reads end of file when the program's last handle on it closed)."""
        if self.status is None:
            with self.cond:
                ended = self.cond.wait_for(lambda: self.eof, timeout)
            if not ended:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
                raise AssertionError("the program did not end:\n" + self.text())
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
            self.reader.join(10)
            os.close(self.fd)
        return self.status

    def lines(self) -> list[str]:
        """The screen, line by line, trailing blanks removed (and trailing empty lines)."""
        with self.cond:
            out = [line.rstrip() for line in self.screen.display]
        while out and not out[-1]:
            out.pop()
        return out

    def text(self) -> str:
        return "\n".join(self.lines())


def run_in_terminal(*args: str, cols: int = 80, env: dict[str, str] | None = None
                    ) -> tuple[int, list[str]]:
    """Run to the end; the exit code and the final screen lines."""
    term = Terminal(args, cols=cols, env=env)
    code = term.wait()
    return code, term.lines()
