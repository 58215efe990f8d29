"""Shared helpers for the engine tests (the archive fixtures come from dandiget.testing)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from aiohttp import web

from dandiget.config import TransferConfig
from dandiget.instances import register_instance, unregister_instance
from dandiget.retry import RetryPolicy
from dandiget.testing import TestArchive

#: The test archive's fixtures are opt-in (installing dandiget does not load them into every
#: pytest session); this repository's tests opt in here.
pytest_plugins = ["dandiget.testing.pytest_plugin"]

#: Skips that are right even on CI (the machine runs as root). Any other skip under
#: ``CI=true`` is a failure: ``.ci/setup`` installs everything the tests need, so a skip
#: there means a test that proved nothing.
CI_SKIPS_ALLOWED = ("root can read anything",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        if not any(allowed in reason for allowed in CI_SKIPS_ALLOWED):
            report.outcome = "failed"
            report.longrepr = f"skipped on CI, where nothing may be missing: {reason}"


#: Test files whose count CI prints on its own line: the recorded real-server captures and
#: the differential tests against the reference implementations must visibly have run.
COUNTED = {"golden captures": ("tests/testing/test_golden.py",),
           "differential digests": ("tests/test_digests_reference.py",
                                    "tests/testing/test_archive_digests.py")}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    passed = terminalreporter.stats.get("passed", [])
    for what, files in COUNTED.items():
        n = sum(1 for r in passed if r.nodeid.startswith(files))
        terminalreporter.write_line(f"{what}: {n} passed")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start aiohttp apps whose every request goes to ``handler``; each call returns a base
    URL. For tests that need a server misbehaving in ways the test archive does not model."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def object_path(archive: TestArchive, path: str, dandiset: str = "000001") -> str:
    """A regex for the content-host path of one blob asset (a fault for that one only)."""
    url = archive.asset(dandiset, path).content_url
    return re.escape("/" + url.split("://", 1)[1].split("/", 1)[1])


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (a new folder) for disk-full and read-only tests; the test
    is skipped where mounting is not allowed, and the mount never outlives it."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll an observable condition (what another process left on disk) until it holds.

    For subprocesses, which give no other signal; inside this process wait on events (e.g.
    a pause fault's ``wait_paused``). Fails the test after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)  # the poll interval, not a guess at how long something takes


class LineWatcher:
    """Reads a subprocess's text stream in a thread so a test can wait for a line."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._eof = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, needle: str, timeout: float = 60) -> bool:
        """True once a line containing ``needle`` was read; False at EOF or timeout."""
        def seen() -> bool:
            return any(needle in line for line in self._lines)

        with self._cond:
            self._cond.wait_for(lambda: seen() or self._eof, timeout)
            return seen()

    def text(self) -> str:
        """Everything read, once the stream has ended."""
        self._thread.join(120)
        with self._cond:
            return "".join(self._lines)


#: Retries without the production back-off, so fault tests stay fast.
FAST = TransferConfig(retry=RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.05))


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (posix relative path -> bytes), skipping dandiget's state."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".dandiget") and "/.dandiget/" not in rel:
            out[rel] = p.read_bytes()
    return out


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def dandi_url(text_archive) -> Iterator[str]:
    """``dandi://<name>`` of the text archive, registered as a known instance."""
    register_instance(text_archive.instance)
    yield f"dandi://{text_archive.instance.name}"
    unregister_instance(text_archive.instance.name)


@pytest.fixture
def dandi_register():
    """Register archives as known instances (for ``dandi://``), unregistered at teardown."""
    names: list[str] = []

    def register(archive) -> None:
        register_instance(archive.instance)
        names.append(archive.instance.name)

    yield register
    for n in names:
        unregister_instance(n)
