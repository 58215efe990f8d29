"""The one request executor: fail fast on dead hosts, the auth origin rule, retry logging,
and one fault per request kind (API redirect of a blob and of a Zarr entry, a listing page,
a Range part), each retried to an exact tree."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dandiget.api import ApiClient
from dandiget.digests import MiB
from dandiget.download import download
from dandiget.errors import ConnectError, HTTPError
from dandiget.instances import Instance
from dandiget.requests import ApiAuth, Requester
from dandiget.retry import RetryPolicy
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, UserSpec, ZarrSpec

from .conftest import FAST, Handler

TOKEN = "d" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dandiget_cli() -> list[str]:
    exe = Path(sys.executable).with_name("dandiget")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dandiget.cli"]


# ---------------------------------------------------------------------- fail fast, say why


def test_cli_refused_connection_fails_fast_with_one_line(tmp_path) -> None:
    port = free_port()  # nothing listens there: the kernel refuses the connection
    t0 = time.monotonic()
    r = subprocess.run([*dandiget_cli(), "download",
                        f"http://127.0.0.1:{port}/api/dandisets/000001/", "-o", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode != 0
    assert elapsed < 5, elapsed
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "connection refused" in lines[0]
    assert len(lines[0]) < 250


def test_cli_unresolvable_host_fails_fast_with_one_line(tmp_path) -> None:
    host = "no-such-host.invalid"  # RFC 6761: never resolves
    t0 = time.monotonic()
    r = subprocess.run([*dandiget_cli(), "download", f"http://{host}/api/dandisets/000001/",
                        "-o", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert time.monotonic() - t0 < 10  # one resolver round trip, no retries
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{host}: cannot resolve host name" in lines[0], r.stderr


async def test_host_that_answered_before_is_retried_then_named() -> None:
    """A refusal from a host that answered earlier in the run is transient (a restart):
    retried with back-off, and only then reported, still in one line."""
    async def ok(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/api/x/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        requester = Requester(session, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
        client = ApiClient(Instance("t", None, f"http://127.0.0.1:{port}/api"), session,
                           requester=requester)
        assert await client.get_json("x/") == {"ok": True}
        await runner.cleanup()
        before = requester.retries
        with pytest.raises(ConnectError) as exc:
            await client.get_json("x/")
        assert requester.retries - before == 2  # three attempts in all
        assert str(exc.value) == f"cannot connect to 127.0.0.1:{port}: connection refused"


# ---------------------------------------------------------------------- the auth rule


async def test_token_only_to_the_api_origin_across_redirects_and_next_links(
        serve: Callable[[Handler], Awaitable[str]]) -> None:
    """401 -> key; the key goes to the API origin only: not to a redirect target or a
    pagination ``next`` link on another origin (a mirror, a CDN, an attacker)."""
    seen: list[tuple[str, str, str | None]] = []
    other_base = ""

    async def other(request: web.Request) -> web.StreamResponse:
        seen.append(("other", request.path, request.headers.get("Authorization")))
        if request.path == "/page2":
            return web.json_response({"next": None, "results": [3]})
        return web.json_response({"moved": True})

    async def api(request: web.Request) -> web.StreamResponse:
        seen.append(("api", request.path, request.headers.get("Authorization")))
        if request.headers.get("Authorization") != f"token {TOKEN}":
            return web.json_response({"detail": "Authentication credentials were not provided."},
                                     status=401)
        if request.path == "/api/moved/":
            raise web.HTTPFound(f"{other_base}/elsewhere")
        return web.json_response({"next": f"{other_base}/page2", "results": [1, 2]})

    api_base, other_base = await serve(api), await serve(other)
    async with aiohttp.ClientSession() as session:
        client = ApiClient(Instance("t", None, f"{api_base}/api"), session, retry=FAST.retry)
        client.auth = ApiAuth(client.instance.api, None, lambda: TOKEN)
        assert await client.get_json("moved/") == {"moved": True}
        items = [i async for i in client.paginate("list/")]
        assert items == [1, 2, 3]
        assert TOKEN not in repr(client) and TOKEN not in repr(client.auth)
    assert ("api", "/api/moved/", None) in seen  # anonymous first
    assert ("api", "/api/moved/", f"token {TOKEN}") in seen  # then with the key
    assert [s for s in seen if s[0] == "other"] == [("other", "/elsewhere", None),
                                                    ("other", "/page2", None)]


# ---------------------------------------------------------------------- faults per request kind


def embargoed_spec() -> ArchiveSpec:
    return ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000030", embargoed=True, owners=["alice"], assets=[
            BlobSpec(path="blob.bin", size=300_000, seed=5),
            ZarrSpec(path="data.zarr", entries={".zgroup": b"{}", "0/0": b"x" * 5000,
                                                "0/1": b"y" * 7000})])],
        users=[UserSpec("alice", TOKEN)])


@pytest.fixture
def embargoed(archive_factory, dandi_register, monkeypatch):
    archive = archive_factory(embargoed_spec())
    dandi_register(archive)
    monkeypatch.setenv("DANDI_API_KEY", TOKEN)
    return archive


@pytest.mark.parametrize("pattern", [
    r"/assets/[^/]+/download/",  # the API redirect of an embargoed blob
    r"/zarr/[^/]+/files/.*download=true",  # the API redirect of an embargoed Zarr entry
])
def test_dropped_connection_on_download_redirect_is_retried(embargoed, tmp_path,
                                                             pattern) -> None:
    f = embargoed.inject(pattern, host="api", disconnect=True, times=2)
    download(f"dandi://{embargoed.instance.name}/000030", tmp_path, format="plain", config=FAST)
    assert f.hits == 2
    assert embargoed.compare_tree(tmp_path / "000030", "000030") == []
    assert not any(q.headers.get("Authorization") for q in embargoed.requests
                   if q.host == "content")


def test_503_with_retry_after_on_a_listing_page(embargoed, tmp_path, caplog) -> None:
    f = embargoed.inject(r"/versions/draft/assets/\?", host="api", status=503, retry_after=1,
                         times=1)
    caplog.set_level(logging.DEBUG, logger="dandiget")
    t0 = time.monotonic()
    download(f"dandi://{embargoed.instance.name}/000030", tmp_path, format="plain",
             config=FAST)
    assert time.monotonic() - t0 >= 1.0  # Retry-After, not FAST's 50 ms back-off
    assert f.hits == 1
    assert embargoed.compare_tree(tmp_path / "000030", "000030") == []
    retries = [r.getMessage() for r in caplog.records if "retry 1/" in r.getMessage()]
    assert any("HTTP 503" in m and "in 1.00 s" in m and "/assets/" in m for m in retries)
    # every request is logged with its status and time, without query strings
    assert any("-> 503 in" in r.getMessage() for r in caplog.records)
    assert any("-> 302 in" in r.getMessage() for r in caplog.records)
    assert not any("X-Amz-Signature" in r.getMessage() for r in caplog.records)


def test_429_on_one_range_part(archive_factory, dandi_register, tmp_path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000031", assets=[
        BlobSpec(path="big.bin", size=40 * MiB, seed=9)])]))
    dandi_register(archive)
    # one Range part that does not start at byte 0
    f = archive.inject(r"/blobs/", host="content", range=r"^bytes=[1-9]\d*-", status=429,
                       retry_after=0, times=1)
    download(f"dandi://{archive.instance.name}/000031", tmp_path, format="plain", config=FAST)
    assert f.hits == 1
    ranges = [q.headers.get("Range") for q in archive.requests if q.host == "content"]
    assert len(ranges) == len(set(ranges)) + 1  # exactly one range asked twice
    assert archive.compare_tree(tmp_path / "000031", "000031") == []


async def test_get_json_attempts_override_fails_fast_on_a_page(archive_factory) -> None:
    """``attempts=`` lets a listing give up on a slow page at once (and shrink its size)."""
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000032", assets=[
        BlobSpec(path="a.txt", content=b"a")])]))
    f = archive.inject(r"/assets/\?", host="api", status=503, times=5)
    path = "dandisets/000032/versions/draft/assets/"
    async with aiohttp.ClientSession() as session:
        client = ApiClient(archive.instance, session, retry=FAST.retry)
        with pytest.raises(HTTPError) as exc:
            await client.get_json(path, {"page_size": "1000"}, attempts=1)
        assert exc.value.status == 503 and f.hits == 1
        page = await client.get_json(path, {"page_size": "10"})  # the full budget: retried
        assert f.hits == 5 and [r["path"] for r in page["results"]] == ["a.txt"]
