"""``download()`` in Jupyter, for real: a notebook run by nbclient on an ipykernel kernel
against the test archive, then the executed notebook opened in JupyterLab in headless
Chromium (DANDI Hub is a JupyterHub; this is how most users see dandiget's live display).

The screenshots land in ``tests/artifacts/`` (git-ignored); the test output says where.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, TestArchive

try:
    import nbformat
    from nbclient import NotebookClient
    from nbformat import NotebookNode
except ImportError as e:  # pragma: no cover - the `test` extra installs them
    pytest.fail(f"{e}: install the notebook test deps: pip install -e '.[test]'",
                pytrace=False)

MiB = 1 << 20
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: Big enough to stream (> 2 MiB, not fetched in one piece) and slow enough (2 s each)
#: that the live display must redraw with partial progress.
SLOW = ["sub-01/sub-01_ecephys.nwb", "sub-02/sub-02_ecephys.nwb"]
GOOD = [*SLOW, "README.md"]

CELLS = [
    'ARCHIVE = "{api_url}"  # the test archive this test started',
    'from dandiget.download import download\n\n'
    'report = download(f"{{ARCHIVE}}/dandisets/000001/", "data")\n'
    'report',
    'download(f"{{ARCHIVE}}/dandisets/000002/", "data")',
    'download(f"{{ARCHIVE}}/dandisets/000009/", "data")  # no such dandiset',
    'download(f"{{ARCHIVE}}/dandisets/000003/", "data")  # interrupted by the test',
    'import threading\n\n'
    'sorted(t.name for t in threading.enumerate() if t.name.startswith("dandiget"))',
    'from dandiget.download import download\n\n'  # run in JupyterLab; nbclient skips it
    'download(f"{{ARCHIVE}}/dandisets/000001/", "live")',
]
DOWNLOAD, FAILING, NOT_FOUND, INTERRUPTED, THREADS, LIVE = 1, 2, 3, 4, 5, 6


def spec() -> ArchiveSpec:
    return ArchiveSpec(dandisets=[
        DandisetSpec("000001", name="Notebook demo", assets=[
            BlobSpec(SLOW[0], size=3 * MiB, seed=1),
            BlobSpec(SLOW[1], size=3 * MiB, seed=2),
            BlobSpec("README.md", b"# Notebook demo\n"),
        ]),
        DandisetSpec("000002", name="Broken", assets=[
            BlobSpec("good.txt", b"fine\n"),
            BlobSpec("missing.nwb", b"m" * 1000),
            BlobSpec("corrupt.nwb", b"c" * 1000),
        ]),
        DandisetSpec("000003", name="Interrupted", assets=[
            BlobSpec("slow.nwb", size=8 * MiB, seed=3),  # 8 s: interrupted long before
        ]),
    ])


@dataclass
class NotebookRun:
    archive: TestArchive
    workdir: Path
    nb: NotebookNode
    #: (cell index, msg_type, content) of every kernel message nbclient processed, in order.
    messages: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def outputs(self, cell: int) -> list[NotebookNode]:
        return self.nb.cells[cell].outputs


class RecordingClient(NotebookClient):
    """nbclient, keeping every message so the test can see the display's updates."""

    def __init__(self, nb: NotebookNode, sink: list[tuple[int, str, dict[str, Any]]],
                 **kw: Any):
        super().__init__(nb, **kw)
        self.sink = sink

    def process_message(self, msg: dict[str, Any], cell: NotebookNode,
                        cell_index: int) -> NotebookNode | None:
        self.sink.append((cell_index, msg["msg_type"], msg["content"]))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def jupyter_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Jupyter's and IPython's config, data and runtime folders, private to these tests."""
    home = tmp_path_factory.mktemp("jupyter-home")
    with pytest.MonkeyPatch.context() as mp:
        for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")]:
            (home / sub).mkdir()
            mp.setenv(var, str(home / sub))
        mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
        yield home


def blob_of(archive: TestArchive, dandiset: str, path: str) -> str:
    """A fault pattern matching only this asset's blob on the content host."""
    blob = archive.asset(dandiset, path).blob_id
    assert blob is not None
    return re.escape(blob)


def interrupt_when_fetching(client: NotebookClient, archive: TestArchive, blob: str,
                            done: threading.Event) -> None:
    """Press Jupyter's "interrupt the kernel" (SIGINT, as ipykernel's interrupt mode is
    "signal") once the content host is sending ``blob``."""
    while not done.wait(0.05):
        if any(r.host == "content" and re.search(blob, r.path) for r in archive.requests):
            os.kill(client.km.provisioner.process.pid, signal.SIGINT)
            return


@pytest.fixture(scope="module")
def run(jupyter_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookRun]:
    """The demo notebook, executed once on a real kernel (the kernel is shut down after)."""
    workdir = tmp_path_factory.mktemp("notebook")
    with TestArchive(spec()) as archive:
        for path in SLOW:
            archive.inject(blob_of(archive, "000001", path), host="content", rate=3 * MiB // 2)
        archive.inject(blob_of(archive, "000002", "missing.nwb"), host="content", status=404)
        archive.inject(blob_of(archive, "000002", "corrupt.nwb"), host="content", corrupt=True)
        slow = blob_of(archive, "000003", "slow.nwb")
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src.format(api_url=archive.api_url))
                    for src in CELLS]
        archive.inject(slow, host="content", rate=1 * MiB)
        for cell in (FAILING, NOT_FOUND, INTERRUPTED):
            nb.cells[cell].metadata["tags"] = ["raises-exception"]
        nb.cells[LIVE].metadata["tags"] = ["skip-execution"]
        result = NotebookRun(archive, workdir, nb)
        client = RecordingClient(nb, result.messages, kernel_name="python3", timeout=120,
                                 resources={"metadata": {"path": str(workdir)}})
        done = threading.Event()
        interrupter = threading.Thread(target=interrupt_when_fetching,
                                       args=(client, archive, slow, done))
        interrupter.start()
        try:
            client.execute()
        finally:
            done.set()
            interrupter.join()
        nbformat.write(nb, workdir / "dandiget.ipynb")
        yield result


def text(output: NotebookNode) -> str:
    return str(output.get("data", {}).get("text/plain", "")) or str(output.get("text", ""))


def displays(run: NotebookRun, cell: int) -> list[NotebookNode]:
    return [o for o in run.outputs(cell) if o.output_type == "display_data"]


def check_clean(outputs: list[NotebookNode]) -> None:
    """What a person reads: no escape codes, no second copy of the table."""
    for o in outputs:
        if o.output_type == "error":
            continue  # IPython colours tracebacks with ANSI on purpose; Jupyter renders them
        blob = json.dumps(o.get("data", {})) + json.dumps(o.get("text", ""))
        assert "\\u001b" not in blob and "\x1b" not in blob, o
    tables = [o for o in outputs if "PATH" in text(o)]
    assert len(tables) == 1, [text(o) for o in outputs]
    assert text(tables[0]).count("PATH") == 1 and text(tables[0]).count("Summary:") == 1


def test_download_cell_shows_the_final_table_and_a_compact_report(run: NotebookRun) -> None:
    root = run.workdir / "data" / "000001"
    assert run.archive.compare_tree(root, "000001") == []
    assert (root / "dandiset.yaml").is_file()

    outputs = run.outputs(DOWNLOAD)
    check_clean(outputs)
    [live] = displays(run, DOWNLOAD)  # one display, updated in place
    plain, html = live.data["text/plain"], live.data["text/html"]
    for path in GOOD:
        assert f"000001/{path}" in plain and f"000001/{path}" in html
        row = next(line for line in plain.splitlines() if f"000001/{path}" in line)
        assert re.search(r"\bok\b.*\bdone\b", row), row  # checksum verified, finished
    assert "Summary: 4/4 files" in plain
    assert "4 files downloaded (6.3 MB), 0 skipped, 0 errors" in plain
    assert html.startswith("<pre") and "<span" in html  # styled, not escape codes

    [result] = [o for o in outputs if o.output_type == "execute_result"]
    shown = result.data["text/plain"]
    assert shown.startswith("DownloadReport(ok=True, downloaded=4, skipped=0, failed=0")
    assert "\n" not in shown and len(shown) < 200  # not a dump of every outcome
    assert [o.output_type for o in outputs] == ["display_data", "execute_result"]


def test_the_display_updates_while_downloading(run: NotebookRun) -> None:
    updates = [c["data"]["text/plain"] for cell, kind, c in run.messages
               if cell == DOWNLOAD and kind == "update_display_data"]
    assert len(updates) >= 2, updates
    midway = [u for u in updates[:-1] if "downloading" in u]
    assert midway, updates  # the table was redrawn while files were still transferring
    assert "Summary: 4/4 files" not in midway[0]
    ids = {c["transient"]["display_id"] for cell, kind, c in run.messages
           if cell == DOWNLOAD and kind in ("display_data", "update_display_data")}
    assert len(ids) == 1  # every redraw replaces the same display


def test_failures_show_path_and_reason(run: NotebookRun) -> None:
    outputs = run.outputs(FAILING)
    check_clean(outputs)
    [live] = displays(run, FAILING)
    plain = live.data["text/plain"]
    assert "2 files failed:" in plain
    assert re.search(r"\n  000002/missing\.nwb: .*\b404\b", plain)
    assert re.search(r"\n  000002/corrupt\.nwb: .*dandi-etag", plain)
    assert "000002/missing.nwb" in live.data["text/html"]
    assert "2 files downloaded" in plain and "2 errors" in plain
    [error] = [o for o in outputs if o.output_type == "error"]
    assert error.ename == "DownloadFailed"
    assert "Encountered 2 errors while downloading." in error.evalue
    root = run.workdir / "data" / "000002"
    assert (root / "good.txt").read_bytes() == b"fine\n"
    assert not (root / "missing.nwb").exists() and not (root / "corrupt.nwb").exists()


def test_a_bad_url_says_why_in_the_display(run: NotebookRun) -> None:
    outputs = run.outputs(NOT_FOUND)
    check_clean(outputs)
    [live] = displays(run, NOT_FOUND)
    [error] = [o for o in outputs if o.output_type == "error"]
    assert error.ename == "NotFoundError"
    assert f"NotFoundError: {error.evalue}" in live.data["text/plain"]
    assert "000009" in error.evalue


def test_interrupting_the_kernel_stops_the_download(run: NotebookRun) -> None:
    outputs = run.outputs(INTERRUPTED)
    check_clean(outputs)
    [live] = displays(run, INTERRUPTED)
    plain = live.data["text/plain"]
    assert "Interrupted after: " in plain and "000003/slow.nwb" in plain
    assert [o.ename for o in outputs if o.output_type == "error"] == ["KeyboardInterrupt"]
    assert not (run.workdir / "data" / "000003" / "slow.nwb").exists()
    # and it stayed stopped: the next cell saw no dandiget thread (see the test below)


def test_nothing_keeps_running_after_the_cell(run: NotebookRun) -> None:
    """No dandiget thread outlives its cell, and nothing printed into a later cell."""
    [result] = run.outputs(THREADS)
    assert result.output_type == "execute_result" and text(result) == "[]"
    assert run.outputs(0) == []


# ---------------------------------------------------------------------- JupyterLab + Chromium


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def jupyterlab(run: NotebookRun, jupyter_env: Path) -> Iterator[str]:
    """JupyterLab serving the executed notebook on 127.0.0.1; its URL (with the token)."""
    token = secrets.token_hex(16)
    settings = jupyter_env / "lab-settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # every cell laid out at once, so clicking the first one does not race the scrolling
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    port = free_port()
    log = (jupyter_env / "jupyterlab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", "--allow-root",
         "--ServerApp.terminals_enabled=False", f"--ServerApp.root_dir={run.workdir}",
         f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={jupyter_env / 'workspaces'}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        status = f"http://127.0.0.1:{port}/api/status?token={token}"
        for _ in range(600):  # up to 60 s: the server answers, or it died
            try:
                with urllib.request.urlopen(status, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail("JupyterLab exited:\n" + (jupyter_env / "jupyterlab.log").read_text())
        else:
            pytest.fail("JupyterLab did not answer:\n"
                        + (jupyter_env / "jupyterlab.log").read_text())
        yield f"http://127.0.0.1:{port}/lab/tree/dandiget.ipynb?token={token}"
    finally:
        proc.terminate()  # jupyter_server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright (which never downloads a browser)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does it)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def lab(jupyterlab: str, browser: Any, jupyter_env: Path) -> Iterator[Any]:
    """One JupyterLab page with the notebook open, once its kernel says Idle: before that,
    clicks and keys land in a half-built page (and a second page would start and shut down
    a second kernel for the same notebook, interrupting the first)."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        with evidence(page, jupyter_env, "jupyterlab-open"):
            page.goto(jupyterlab)
            page.get_by_text(re.compile(r"\(ipykernel\) \| Idle$")).wait_for(timeout=45_000)
        yield page
    finally:
        page.close()


@contextlib.contextmanager
def evidence(page: Any, jupyter_env: Path, name: str) -> Iterator[None]:
    """On failure: a screenshot in the artifacts folder and JupyterLab's log in the output."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{name}-failure.png")
        print(f"failure screenshot: {ARTIFACTS / f'{name}-failure.png'}")
        print((jupyter_env / "jupyterlab.log").read_text())
        raise


def test_jupyterlab_shows_the_table(lab: Any, jupyter_env: Path) -> None:
    page = lab
    with evidence(page, jupyter_env, "jupyterlab"):
        area = page.locator(".jp-Cell").nth(DOWNLOAD).locator(".jp-OutputArea")
        table = area.locator("pre", has_text="Summary: 4/4 files")
        table.wait_for(state="visible", timeout=15_000)
        failures = page.locator(".jp-Cell").nth(FAILING).locator(
            "pre", has_text="2 files failed:")
        failures.wait_for(state="visible", timeout=15_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "jupyterlab.png")
        page.locator(".jp-Cell").nth(DOWNLOAD).screenshot(path=ARTIFACTS / "jupyter-cell.png")
        print(f"screenshots: {ARTIFACTS / 'jupyterlab.png'}, {ARTIFACTS / 'jupyter-cell.png'}")

        shown = table.inner_text()
        for path in GOOD:
            assert f"000001/{path}" in shown
        assert "4 files downloaded (6.3 MB), 0 skipped, 0 errors" in shown
        assert "\x1b" not in shown and shown.count("PATH") == 1
        # the rich styles survived the HTML sanitizer: finished rows are green
        done = table.locator("span", has_text=re.compile(r"^done\s*$")).first
        assert done.evaluate("e => getComputedStyle(e).color") == "rgb(0, 128, 0)"
        result = page.locator(".jp-Cell").nth(DOWNLOAD).locator(
            ".jp-OutputArea-output", has_text="DownloadReport(ok=True")
        assert "downloaded=4, skipped=0, failed=0" in result.inner_text()
        bad = failures.inner_text()
        assert re.search(r"000002/missing\.nwb: .*\b404\b", bad)
        assert re.search(r"000002/corrupt\.nwb: .*dandi-etag", bad)


def test_jupyterlab_updates_the_table_live(run: NotebookRun, lab: Any,
                                           jupyter_env: Path) -> None:
    """A person runs the cell in JupyterLab: the one table changes while files arrive."""
    page = lab
    with evidence(page, jupyter_env, "jupyter-live"):
        for n in (0, LIVE):  # the kernel is new: ARCHIVE first, then the download
            page.locator(".jp-Cell").nth(n).locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
        cell = page.locator(".jp-Cell").nth(LIVE)
        out = cell.locator(".jp-OutputArea")
        # a row part-way through: DONE% between 1 and 99 (no checksum yet), downloading
        midway = out.locator("pre", has_text=re.compile(r" [1-9]\d? +downloading"))
        midway.wait_for(state="visible", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        cell.screenshot(path=ARTIFACTS / "jupyter-live.png")
        print(f"screenshot: {ARTIFACTS / 'jupyter-live.png'}")
        assert "Summary: 4/4 files" not in midway.inner_text()
        final = out.locator("pre", has_text="Summary: 4/4 files").filter(
            has_text="4 files downloaded (6.3 MB), 0 skipped, 0 errors")
        final.wait_for(state="visible", timeout=30_000)  # the last redraw, with the report
        assert out.locator("pre", has_text="PATH").count() == 1  # updated in place
    assert run.archive.compare_tree(run.workdir / "live" / "000001", "000001") == []

