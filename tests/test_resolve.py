"""Resource-identifier resolution (spec §2, §4.5, §4.10, §4.11) against real local servers."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from dandiget.errors import ConnectError, FailedToConnectError, NotFoundError, UnknownURLError
from dandiget.instances import Instance, known_instances, register_instance, unregister_instance
from dandiget.resolve import (
    ACCEPTED_PATTERNS,
    ParsedURL,
    URLKind,
    clear_instance_cache,
    in_download_area,
    normalize_asset_path,
    output_prefix,
    parse_url,
    relative_download_path,
    resolve_url,
)
from dandiget.retry import RetryPolicy

from .conftest import Handler

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005)
ASSET = "0a748f90-d497-4a9c-822e-9c63811db412"
API = "https://api.dandiarchive.org/api"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Deterministic instance table and an empty server cache for every test."""
    monkeypatch.delenv("DANDI_INSTANCEHOST", raising=False)
    monkeypatch.delenv("DANDIGET_EXTRA_INSTANCES", raising=False)
    clear_instance_cache()
    yield
    clear_instance_cache()


def inst(name: str) -> Instance:
    return known_instances()[name]


def unknown_url_message(url: str) -> str:
    return (
        f"We do not know how to map URL {url} to our servers.\n"
        "Accepted resource identifier patterns:"
        + "".join(f"\n - {line}" for line in ACCEPTED_PATTERNS)
    )


async def closed_session() -> aiohttp.ClientSession:
    """A session that raises on any use: proves a resolution made no request at all."""
    session = aiohttp.ClientSession()
    await session.close()
    return session


# ---------------------------------------------------------------------------------------------
# Offline parsing: every worked example of §2.6
# ---------------------------------------------------------------------------------------------

D, AID, BID, IT, F, P, G = (
    URLKind.DANDISET,
    URLKind.ASSET_ID,
    URLKind.BASE_ASSET_ID,
    URLKind.ITEM,
    URLKind.FOLDER,
    URLKind.PREFIX,
    URLKind.GLOB,
)

# (url, kind, instance, dandiset, version, asset id, path)
# fmt: off
OFFLINE_CASES: list[tuple[str, URLKind, str, str | None, str | None, str | None, str | None]] = [
    ("DANDI:000027", D, "dandi", "000027", None, None, None),
    ("DANDI:000027/0.210831.2033", D, "dandi", "000027", "0.210831.2033", None, None),
    ("DANDI:000027/draft", D, "dandi", "000027", "draft", None, None),
    ("DANDI-SANDBOX:000029", D, "dandi-sandbox", "000029", None, None, None),
    ("LINC:000029/0.210831.2033", D, "linc", "000029", "0.210831.2033", None, None),
    ("EMBER-DANDI-SANDBOX:000029/draft", D, "ember-dandi-sandbox", "000029", "draft", None, None),
    ("DANDI-API-LOCAL-DOCKER-TESTS:000002", D, "dandi-api-local-docker-tests", "000002",
     None, None, None),
    # decision §12.8: the instance prefix is accepted in any case
    ("dandi:000027", D, "dandi", "000027", None, None, None),
    ("Linc-Staging:000001/draft", D, "linc-staging", "000001", "draft", None, None),
    ("https://dandiarchive.org/dandiset/000001", D, "dandi", "000001", None, None, None),
    ("https://dandiarchive.org/#/dandiset/000001", D, "dandi", "000001", None, None, None),
    ("https://dandiarchive.org/dandiset/000001/", D, "dandi", "000001", None, None, None),
    ("https://dandiarchive.org/dandiset/000001/0.201104.2302/", D, "dandi", "000001",
     "0.201104.2302", None, None),
    ("https://dandiarchive.org/dandiset/000001/0.201104.2302/files", D, "dandi", "000001",
     "0.201104.2302", None, None),
    ("https://dandiarchive.org/dandiset/000001/draft", D, "dandi", "000001", "draft", None, None),
    ("https://dandiarchive.org/#/dandiset/000001/files?location=%2Fsub-anm369962", F, "dandi",
     "000001", None, None, "sub-anm369962/"),
    ("https://dandiarchive.org/#/dandiset/001001/draft/files?location=sub-RAT123%2F", F, "dandi",
     "001001", "draft", None, "sub-RAT123/"),
    ("https://dandiarchive.org/dandiset/001001/draft/files?location=sub-RAT123/a.nwb&x=y", F,
     "dandi", "001001", "draft", None, "sub-RAT123/a.nwb&x=y/"),
    ("https://dandiarchive.org/dandiset/000001/files?location=", D, "dandi", "000001",
     None, None, None),
    ("https://dandiarchive.org/dandiset/000001/files?location=%2F", D, "dandi", "000001",
     None, None, None),
    ("https://sandbox.dandiarchive.org/#/dandiset/000018", D, "dandi-sandbox", "000018",
     None, None, None),
    ("https://deploy-preview-854--gui-dandiarchive-org.netlify.app/#/dandiset/000018", D,
     "dandi-sandbox", "000018", None, None, None),
    ("http://localhost:8000/api/dandisets/000002", D, "dandi-api-local-docker-tests", "000002",
     None, None, None),
    ("http://localhost:8000/api/dandisets/000002/", D, "dandi-api-local-docker-tests", "000002",
     None, None, None),
    ("http://localhost:8000/api/dandisets/000002/versions/draft", D,
     "dandi-api-local-docker-tests", "000002", "draft", None, None),
    ("http://localhost:8000/api/dandisets/000002/versions/draft/", D,
     "dandi-api-local-docker-tests", "000002", "draft", None, None),
    ("http://localhost:8085/dandiset/000002", D, "dandi-api-local-docker-tests", "000002",
     None, None, None),
    (f"{API}/assets/{ASSET}/download/", BID, "dandi", None, None, ASSET, None),
    (f"{API}/assets/{ASSET}/download", BID, "dandi", None, None, ASSET, None),
    (f"{API}/assets/{ASSET}/", BID, "dandi", None, None, ASSET, None),
    (f"{API}/assets/{ASSET}", BID, "dandi", None, None, ASSET, None),
    (f"{API}/dandisets/000003/versions/draft/assets/{ASSET}/download", AID, "dandi", "000003",
     "draft", ASSET, None),
    (f"{API}/dandisets/000003/versions/0.210831.2033/assets/{ASSET}/", AID, "dandi", "000003",
     "0.210831.2033", ASSET, None),
    (f"{API}/dandisets/000003/versions/draft/assets/?path=sub-YutaMouse20", P, "dandi", "000003",
     "draft", None, "sub-YutaMouse20"),
    (f"{API}/dandisets/000003/versions/draft/assets/?path=sub-YutaMouse*", P, "dandi", "000003",
     "draft", None, "sub-YutaMouse*"),
    # the value of ?path= / ?glob= is not URL-decoded (as dandi-cli)
    (f"{API}/dandisets/000003/versions/draft/assets/?path=a%2Fb", P, "dandi", "000003",
     "draft", None, "a%2Fb"),
    (f"{API}/dandisets/000003/versions/draft/assets/?glob=sub-YutaMouse*", G, "dandi", "000003",
     "draft", None, "sub-YutaMouse*"),
    ("dandi://dandi-api-local-docker-tests/000002@draft", D, "dandi-api-local-docker-tests",
     "000002", "draft", None, None),
    ("dandi://dandi-api-local-docker-tests/000002@draft/path", IT, "dandi-api-local-docker-tests",
     "000002", "draft", None, "path"),
    ("dandi://dandi/000002/path/", F, "dandi", "000002", None, None, "path/"),
    ("dandi://dandi/000002/", D, "dandi", "000002", None, None, None),
    ("dandi://dandi/000002//sub%20dir/a%3Fb.nwb", IT, "dandi", "000002", None, None,
     "sub dir/a?b.nwb"),
    ("dandi://dandi-api-local-docker-tests/000002/f*/bar.nwb", IT, "dandi-api-local-docker-tests",
     "000002", None, None, "f*/bar.nwb"),
    ("dandi://DANDI/000027@0.210831.2033/sub-RAT123/sub-RAT123.nwb", IT, "dandi", "000027",
     "0.210831.2033", None, "sub-RAT123/sub-RAT123.nwb"),
    ("dandi://dandi/000027/dandiset.yaml", IT, "dandi", "000027", None, None, "dandiset.yaml"),
    # fix §11.2.16: other spellings of a known instance's URLs
    ("https://dandiarchive.org/api/dandiset/000001", D, "dandi", "000001", None, None, None),
    ("https://api.dandiarchive.org/dandisets/000001", D, "dandi", "000001", None, None, None),
    ("https://dandiarchive.org/dandisets/000001/versions/draft", D, "dandi", "000001", "draft",
     None, None),
    ("https://api.sandbox.dandiarchive.org/api/dandiset/000001", D, "dandi-sandbox", "000001",
     None, None, None),
    # decision: identifiers.org accepts /draft (mapped locally, no network)
    ("https://identifiers.org/DANDI:000027/draft", D, "dandi", "000027", "draft", None, None),
    ("http://identifiers.org/dandi:000027/DRAFT", D, "dandi", "000027", "draft", None, None),
]
# fmt: on


@pytest.mark.parametrize(
    ("url", "kind", "instance", "dandiset_id", "version_id", "asset_id", "path"), OFFLINE_CASES
)
async def test_worked_examples(
    url: str,
    kind: URLKind,
    instance: str,
    dandiset_id: str | None,
    version_id: str | None,
    asset_id: str | None,
    path: str | None,
) -> None:
    # A closed session proves that known instances cost no round trip.
    parsed = await resolve_url(url, session=await closed_session())
    assert parsed == ParsedURL(kind, inst(instance), dandiset_id, version_id, asset_id, path)
    assert parsed.original == url
    assert parsed.is_single_asset == (kind in (IT, AID, BID))
    assert parsed.is_multi_asset == (kind in (F, P, G))


# §4.11 and §10.2 row 2: glob mode changes only dandi:// paths and GUI ?location=
# fmt: off
GLOB_CASES: list[tuple[str, bool, URLKind, str | None]] = [
    ("https://dandiarchive.org/dandiset/001001/draft/files?location=sub-RAT123/*.nwb", True, G,
     "sub-RAT123/*.nwb"),
    ("https://dandiarchive.org/dandiset/001001/draft/files?location=sub-RAT123", True, G,
     "sub-RAT123"),
    ("https://dandiarchive.org/dandiset/001001/draft/files?location=sub-RAT123", False, F,
     "sub-RAT123/"),
    ("https://dandiarchive.org/dandiset/001001/draft/files?location=", True, D, None),
    ("dandi://dandi-api-local-docker-tests/000002/f*/bar.nwb", True, G, "f*/bar.nwb"),
    ("dandi://dandi-api-local-docker-tests/000002/f*/bar.nwb", False, IT, "f*/bar.nwb"),
    ("dandi://dandi/000002/sub/", True, G, "sub/"),
    (f"{API}/dandisets/000003/versions/draft/assets/?path=sub-YutaMouse*", True, P,
     "sub-YutaMouse*"),
    (f"{API}/dandisets/000003/versions/draft/assets/?glob=sub-YutaMouse*", False, G,
     "sub-YutaMouse*"),
    (f"{API}/dandisets/000003/versions/draft/assets/?glob=sub-YutaMouse*", True, G,
     "sub-YutaMouse*"),
    ("DANDI:000027", True, D, None),
]
# fmt: on


@pytest.mark.parametrize(("url", "glob", "kind", "path"), GLOB_CASES)
def test_glob_mode(url: str, glob: bool, kind: URLKind, path: str | None) -> None:
    parsed = parse_url(url, glob=glob)
    assert (parsed.kind, parsed.path) == (kind, path)


@pytest.mark.parametrize(
    "url",
    [
        "DANDI:27",
        "000027",
        "DANDI:000027/",
        "DANDI:000027/draft/",
        "DANDI:000027/latest",
        "NOSUCH:000027",
        "",
        "HTTPS://dandiarchive.org/dandiset/000001",
        "dandi://dandi/27",
        "dandi://dandi/000027\n",
        "http://",
        "https:///dandiset/000001",
        "https://host:99999999/x",
        "https://a b/x",
    ],
)
def test_unknown_url_message(url: str) -> None:
    with pytest.raises(UnknownURLError) as excinfo:
        parse_url(url)
    assert str(excinfo.value) == unknown_url_message(url)
    assert isinstance(excinfo.value, ValueError)


def test_unknown_instance_message() -> None:
    with pytest.raises(UnknownURLError) as excinfo:
        parse_url("dandi://not-an-instance/000001")
    assert str(excinfo.value) == (
        "Unknown instance 'not-an-instance'.  Valid instances: dandi, "
        "dandi-api-local-docker-tests, dandi-sandbox, ember-dandi, ember-dandi-sandbox, "
        "linc, linc-staging"
    )


def test_unknown_instance_lists_registered_instances() -> None:
    register_instance(Instance("zz-private", None, "https://zz.example/api"))
    try:
        with pytest.raises(UnknownURLError, match=r"linc-staging, zz-private$"):
            parse_url("dandi://Nope/000001")
        assert parse_url("ZZ-PRIVATE:000001").instance.name == "zz-private"
        assert parse_url("https://zz.example/api/dandisets/000001/").instance.name == "zz-private"
    finally:
        unregister_instance("zz-private")


def test_extra_instances_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DANDIGET_EXTRA_INSTANCES",
        json.dumps(
            {"myarchive": {"api": "https://api.my.example/api/", "gui": "https://my.example"}}
        ),
    )
    parsed = parse_url("dandi://myarchive/000001@draft/a/")
    assert parsed.instance == Instance(
        "myarchive", "https://my.example", "https://api.my.example/api"
    )
    assert parse_url("https://my.example/#/dandiset/000001").instance.name == "myarchive"


def test_known_instance_keys_are_lower_case() -> None:
    assert all(name == name.lower() for name in known_instances())


def test_docker_host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DANDI_INSTANCEHOST", "dockerhost")
    parsed = parse_url("http://dockerhost:8000/api/dandisets/000002/")
    assert parsed.instance == Instance(
        "dandi-api-local-docker-tests", "http://dockerhost:8085", "http://dockerhost:8000/api"
    )


def test_instance_equality_across_spellings() -> None:
    a = parse_url("http://localhost:8000/api/dandisets/000002/versions/draft")
    b = parse_url("dandi://dandi-api-local-docker-tests/000002@draft")
    c = parse_url("DANDI-API-LOCAL-DOCKER-TESTS:000002/draft")
    assert a == b == c
    assert a.original != b.original
    assert parse_url("https://dandiarchive.org/api/dandiset/000001").instance == inst("dandi")
    assert parse_url("DANDI:000001") != parse_url("DANDI-SANDBOX:000001")
    assert parse_url("DANDI:000001") != parse_url("DANDI:000001/draft")


def test_accepted_patterns_help() -> None:
    assert len(ACCEPTED_PATTERNS) == 12
    assert ACCEPTED_PATTERNS[-1] == "https://<server>/..."
    assert "dandi://<instance name>/<dandiset id>[@<version>][/<path>]" in ACCEPTED_PATTERNS


async def test_parse_url_inside_running_loop() -> None:
    """parse_url works from async code (e.g. Jupyter) and does not disturb the caller's loop."""
    loop = asyncio.get_running_loop()
    assert parse_url("DANDI:000027").dandiset_id == "000027"
    assert asyncio.get_running_loop() is loop


# ---------------------------------------------------------------------------------------------
# Local paths (§4.5) and the sync area (§4.10)
# ---------------------------------------------------------------------------------------------

DANDI = inst("dandi")


def url_of(kind: URLKind, path: str | None = None, dandiset_id: str | None = "000001") -> ParsedURL:
    if kind is URLKind.BASE_ASSET_ID:
        return ParsedURL(kind, DANDI, asset_id=ASSET)
    return ParsedURL(kind, DANDI, dandiset_id, "draft", ASSET if kind is AID else None, path)


@pytest.mark.parametrize("kind", [F, P])
@pytest.mark.parametrize(
    ("url_path", "asset_path", "target"),
    [
        ("", "foo/bar", "foo/bar"),
        ("fo", "foo/bar", "foo/bar"),
        ("foo", "foo/bar", "foo/bar"),
        ("foo/", "foo/bar", "foo/bar"),
        ("foo/bar", "foo/bar/baz/quux", "bar/baz/quux"),
        ("foo/bar/", "foo/bar/baz/quux", "bar/baz/quux"),
        ("/foo/bar", "foo/bar/baz/quux", "bar/baz/quux"),
        ("foo/ba", "foo/bar/baz/quux", "bar/baz/quux"),
        ("foo/bar", "foo/bar", "bar"),
        # fixed: the server's path filter ignores case; dandi-cli failed an assertion here
        ("Foo/Bar/", "foo/bar/baz/quux", "bar/baz/quux"),
        ("foo/bar/", "FOO/Bar/baz", "Bar/baz"),
        ("sub-01/ses-1/", "/sub-01/ses-1/x.nwb", "ses-1/x.nwb"),
    ],
)
def test_multiasset_target(kind: URLKind, url_path: str, asset_path: str, target: str) -> None:
    parsed = url_of(kind, url_path)
    assert relative_download_path(parsed, asset_path, preserve_tree=False) == target
    assert relative_download_path(parsed, asset_path, preserve_tree=True) == asset_path.lstrip("/")


@pytest.mark.parametrize(
    ("parsed", "plain", "tree"),
    [
        (url_of(D), "sub/a.nwb", "sub/a.nwb"),
        (url_of(IT, "sub/a.nwb"), "a.nwb", "sub/a.nwb"),
        (url_of(AID), "a.nwb", "sub/a.nwb"),
        (url_of(BID), "a.nwb", "sub/a.nwb"),
        (url_of(G, "s*/a.nwb"), "sub/a.nwb", "sub/a.nwb"),
        (url_of(G, "*a.nwb"), "sub/a.nwb", "sub/a.nwb"),
    ],
)
def test_relative_download_path_kinds(parsed: ParsedURL, plain: str, tree: str) -> None:
    assert relative_download_path(parsed, "/sub/a.nwb", preserve_tree=False) == plain
    assert relative_download_path(parsed, "sub/a.nwb", preserve_tree=True) == tree


@pytest.mark.parametrize(
    ("parsed", "plain", "tree"),
    [
        (url_of(D), "000001", "000001"),
        (url_of(IT, "a.nwb"), "", "000001"),
        (url_of(AID), "", "000001"),
        (url_of(BID), "", ""),
        (url_of(F, "sub/"), "", "000001"),
        (url_of(P, "sub"), "", "000001"),
        (url_of(G, "s*"), "", "000001"),
    ],
)
def test_output_prefix(parsed: ParsedURL, plain: str, tree: str) -> None:
    assert output_prefix(parsed, preserve_tree=False) == plain
    assert output_prefix(parsed, preserve_tree=True) == tree


@pytest.mark.parametrize(
    ("parsed", "rel", "expected"),
    [
        (url_of(D), "anything/at/all.txt", True),
        (url_of(IT, "subdir2/coconut.txt"), "coconut.txt", False),
        (url_of(AID), "coconut.txt", False),
        (url_of(BID), "coconut.txt", False),
        # single-component folder: dandi-cli and the documented intent agree
        (url_of(F, "subdir2/"), "subdir2/banana.txt", True),
        (url_of(F, "subdir2/"), "file.txt", False),
        (url_of(F, "subdir2/"), "subdir20/x.txt", False),
        # nested folder: the fixed case (dandi-cli tested "foo/")
        (url_of(F, "foo/bar/"), "bar/apple.txt", True),
        (url_of(F, "foo/bar/"), "bar/deep/er.txt", True),
        (url_of(F, "foo/bar/"), "foo/bar/apple.txt", False),
        (url_of(F, "foo/bar/"), "foo/other.txt", False),
        (url_of(F, "foo/bar/"), "BAR/apple.txt", True),
        (url_of(F, "foo/bar/"), "barn.txt", False),
        (url_of(P, "foo/ba"), "bar/x.txt", True),
        (url_of(P, "foo/ba"), "ba.txt", True),
        (url_of(P, "foo/ba"), "foo/bar/x.txt", False),
        (url_of(P, "sub"), "sub-01/x", True),
        (url_of(P, "/foo/bar"), "bar/x", True),
        # glob: whole path, case-insensitive, * crosses "/", nothing else is special
        (url_of(G, "s*.Txt"), "subdir1/apple.txt", True),
        (url_of(G, "s*.Txt"), "file.txt", False),
        (url_of(G, "s*.Txt"), "subdir1/apple.txt.bak", False),
        (url_of(G, "sub?ir1/*"), "subdir1/apple.txt", False),
        (url_of(G, "sub?ir1/*"), "sub?ir1/apple.txt", True),
        (url_of(G, "[ab].txt"), "a.txt", False),
        (url_of(G, "[ab].txt"), "[AB].txt", True),
        (url_of(G, "d*/*/*st"), "does/not/exist", True),
    ],
)
def test_in_download_area(parsed: ParsedURL, rel: str, expected: bool) -> None:
    assert in_download_area(parsed, rel) is expected


@pytest.mark.parametrize(
    ("parsed", "rel", "expected"),
    [
        (url_of(F, "foo/bar/"), "foo/bar/apple.txt", True),
        (url_of(F, "foo/bar/"), "bar/apple.txt", False),
        (url_of(F, "foo/bar/"), "foo/other.txt", False),
        (url_of(P, "foo/ba"), "foo/bar/x", True),
        (url_of(G, "s*.txt"), "subdir1/apple.txt", True),
        (url_of(D), "x", True),
    ],
)
def test_in_download_area_preserve_tree(parsed: ParsedURL, rel: str, expected: bool) -> None:
    assert in_download_area(parsed, rel, preserve_tree=True) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a/b", "a/b"),
        ("./a//b/../c", "a/c"),
        (".", ""),
        ("./", ""),
        ("", ""),
        ("a/b/", "a/b/"),
        ("a/./", "a/"),
        ("a//b//", "a/b/"),
        ("a/..", ""),
        ("../a", "../a"),
        ("a/../../b", "../b"),
        ("/a/../..", "/"),
        ("//a", "/a"),
        ("does/not/exist", "does/not/exist"),
    ],
)
def test_normalize_asset_path(path: str, expected: str) -> None:
    assert normalize_asset_path(path) == expected


# ---------------------------------------------------------------------------------------------
# Network: real servers on 127.0.0.1
# ---------------------------------------------------------------------------------------------

def info_json(api: str, gui: str | None) -> dict[str, Any]:
    services: dict[str, Any] = {"api": {"url": api}}
    if gui is not None:
        services["webui"] = {"url": gui}
    return {
        "version": "1.0.0",
        "services": services,
        "cli-minimal-version": "0.74.0",
        "cli-bad-versions": [],
    }


class Recorder:
    """Counts requests by (method, path) and keeps their order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, request: web.Request) -> None:
        self.seen.append((request.method, request.path_qs))

    def count(self, method: str, path: str) -> int:
        return Counter(self.seen)[(method, path)]


async def test_redirect_chain_then_server_info(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """A bit.ly-like short link: 302 -> 301 -> a GUI URL on an unknown server (#12)."""
    rec = Recorder()
    base = ""

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/dandi12":
            raise web.HTTPFound("/hop")
        if request.path == "/hop":
            raise web.HTTPMovedPermanently(f"{base}/dandiset/000027/0.210831.2033")
        if request.path == "/server-info":
            return web.json_response(info_json(f"{base}/api", base))
        return web.Response(text="gui")

    base = await serve(handler)
    parsed = await resolve_url(f"{base}/dandiset/../dandi12", retry=FAST)
    port = base.rsplit(":", 1)[1]
    expected_instance = Instance(f"127.0.0.1:{port}", base, f"{base}/api")
    assert parsed == ParsedURL(D, expected_instance, "000027", "0.210831.2033")
    assert parsed.original == f"{base}/dandiset/../dandi12"
    assert [m for m, _ in rec.seen] == ["HEAD", "HEAD", "HEAD", "GET"]
    assert rec.count("GET", "/server-info") == 1

    # memoised per process: another URL on the same server costs no info request
    again = await resolve_url(f"{base}/api/dandisets/000028/versions/draft/", retry=FAST)
    assert again.instance == expected_instance
    assert rec.count("GET", "/server-info") == 1


async def test_redirect_keeps_fragment(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """requests' rule: a Location without fragment inherits the request's fragment."""
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/gui":
            raise web.HTTPFound("/")
        if request.path == "/server-info":
            return web.json_response(info_json("https://api.example.test/api", None))
        return web.Response(text="ok")

    base = await serve(handler)
    parsed = await resolve_url(f"{base}/gui#/dandiset/000003", retry=FAST)
    assert parsed == ParsedURL(
        D, Instance("api.example.test", None, "https://api.example.test/api"), "000003"
    )
    # the fragment is never sent to the server
    assert rec.seen[:2] == [("HEAD", "/gui"), ("HEAD", "/")]


async def test_redirect_location_fragment_wins(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/a":
            raise web.HTTPFound("/b#/dandiset/000005/draft")
        if request.path == "/b":
            raise web.HTTPTemporaryRedirect("/")
        if request.path == "/server-info":
            return web.json_response(info_json("https://api.example.test/api", None))
        return web.Response()

    base = await serve(handler)
    parsed = await resolve_url(f"{base}/a#/dandiset/000001", retry=FAST)
    assert (parsed.dandiset_id, parsed.version_id) == ("000005", "draft")


class MapResolver(AbstractResolver):
    """DNS for tests: send chosen host names (any port) to a local server."""

    def __init__(self, port: int, hosts: set[str]):
        self.port = port
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.hosts:
            raise OSError(f"unexpected lookup of {host}")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self.port,
                family=socket.AF_INET,
                proto=0,
                flags=0,
            )
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def public_hosts(
    serve: Callable[[Handler], Awaitable[str]],
) -> AsyncIterator[tuple[aiohttp.ClientSession, Recorder]]:
    """gui.dandiarchive.org, dandiarchive.org and identifiers.org (plain http) served locally."""
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        host = request.host.split(":")[0]
        if host == "gui.dandiarchive.org":
            raise web.HTTPFound("http://dandiarchive.org/")
        if host == "identifiers.org":
            if request.path == "/DANDI:000027":
                raise web.HTTPFound("http://dandiarchive.org/dandiset/000027/0.210831.2033")
            return web.Response(text="no redirect for this one")
        if request.path == "/server-info":
            return web.json_response(info_json(API, "https://dandiarchive.org"))
        return web.Response(text="dandiarchive")

    base = await serve(handler)
    resolver = MapResolver(
        int(base.rsplit(":", 1)[1]), {"gui.dandiarchive.org", "dandiarchive.org", "identifiers.org"}
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as session:
        yield session, rec


async def test_gui_dandiarchive_redirect(
    public_hosts: tuple[aiohttp.ClientSession, Recorder],
) -> None:
    """§10.2 row 11: gui.dandiarchive.org/#/dandiset/000003 -> dandiarchive.org/ (+fragment)."""
    session, _rec = public_hosts
    parsed = await resolve_url(
        "http://gui.dandiarchive.org/#/dandiset/000003", session=session, retry=FAST
    )
    # the server answers with dandi's API URL, so the known instance is used
    assert parsed == ParsedURL(D, inst("dandi"), "000003")
    assert not session.closed  # a borrowed session is left open


async def test_identifiers_org(public_hosts: tuple[aiohttp.ClientSession, Recorder]) -> None:
    session, rec = public_hosts
    parsed = await resolve_url("http://identifiers.org/DANDI:000027", session=session, retry=FAST)
    assert parsed == ParsedURL(D, inst("dandi"), "000027", "0.210831.2033")
    # no redirect: mapped locally rather than failing like dandi-cli's "only" fallback
    parsed = await resolve_url(
        "http://identifiers.org/DANDI:000028/0.1.2", session=session, retry=FAST
    )
    assert parsed == ParsedURL(D, inst("dandi"), "000028", "0.1.2")
    n = len(rec.seen)
    parsed = await resolve_url("http://identifiers.org/DANDI:000029/draft", session=session)
    assert parsed == ParsedURL(D, inst("dandi"), "000029", "draft")
    assert len(rec.seen) == n


async def test_redirect_loop(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/b" if request.path == "/a" else "/a")

    base = await serve(handler)
    with pytest.raises(FailedToConnectError, match="redirect loop") as excinfo:
        await resolve_url(f"{base}/a", retry=FAST)
    assert str(excinfo.value) == (
        f"HEAD request to {base}/a ran into a redirect loop ({base}/b redirects back to {base}/a)"
    )


async def test_no_redirect_is_runtime_error(serve: Callable[[Handler], Awaitable[str]]) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        return web.Response(text="a page")

    base = await serve(handler)
    url = f"{base}/dandiset/000001/files/"  # "/files/" is not a GUI URL: falls to #12
    with pytest.raises(RuntimeError) as excinfo:
        await resolve_url(url, retry=FAST)
    assert type(excinfo.value) is RuntimeError
    assert str(excinfo.value) == (
        f"{url} did not redirect to another location which dandi client would know how to handle."
    )
    assert rec.seen == [("HEAD", "/dandiset/000001/files/")]


async def test_redirect_to_non_dandi_page(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """The target is parsed again; a plain page there is the same error, with no second HEAD."""
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/short":
            raise web.HTTPFound("/landing")
        return web.Response(text="a page")

    base = await serve(handler)
    with pytest.raises(RuntimeError, match=f"^{base}/landing did not redirect"):
        await resolve_url(f"{base}/short", retry=FAST)
    assert rec.seen == [("HEAD", "/short"), ("HEAD", "/landing")]


async def test_redirect_404_is_not_found(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/short":
            raise web.HTTPFound("/gone")
        raise web.HTTPNotFound()

    base = await serve(handler)
    with pytest.raises(NotFoundError) as excinfo:
        await resolve_url(f"{base}/short", retry=FAST)
    assert str(excinfo.value) == f"{base}/short"


async def test_redirect_other_status(serve: Callable[[Handler], Awaitable[str]]) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/short":
            raise web.HTTPFound("/private")
        raise web.HTTPForbidden()

    base = await serve(handler)
    with pytest.raises(FailedToConnectError) as excinfo:
        await resolve_url(f"{base}/short", retry=FAST)
    assert str(excinfo.value) == (
        f"HEAD request to {base}/short failed with 403 status code"
        f" (last URL reached: {base}/private)"
    )
    assert rec.count("HEAD", "/private") == 1  # 403 is not retried


async def test_retry_503_with_retry_after(serve: Callable[[Handler], Awaitable[str]]) -> None:
    rec = Recorder()
    base = ""

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/short":
            n = rec.count("HEAD", "/short")
            if n == 1:
                raise web.HTTPServiceUnavailable(headers={"Retry-After": "1"})
            if n == 2:
                raise web.HTTPTooManyRequests(headers={"Retry-After": "0"})
            raise web.HTTPFound(f"{base}/dandiset/000004")
        if request.path == "/server-info":
            return web.json_response(info_json(f"{base}/api", base))
        return web.Response()

    base = await serve(handler)
    t0 = time.monotonic()
    parsed = await resolve_url(f"{base}/short", retry=RetryPolicy(attempts=5, base_delay=30))
    elapsed = time.monotonic() - t0
    assert parsed.dandiset_id == "000004"
    assert rec.count("HEAD", "/short") == 3
    # Retry-After is honoured (1 s, then 0 s) instead of the 30 s exponential base delay
    assert 0.9 <= elapsed < 10


async def test_retry_503_exhausted(serve: Callable[[Handler], Awaitable[str]]) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        raise web.HTTPServiceUnavailable()

    base = await serve(handler)
    with pytest.raises(FailedToConnectError) as excinfo:
        await resolve_url(f"{base}/short", retry=FAST)
    assert str(excinfo.value) == (
        f"HEAD request to {base}/short failed with final 503 status code after 3 attempts"
    )
    assert rec.count("HEAD", "/short") == 3


async def test_retry_on_timeout(serve: Callable[[Handler], Awaitable[str]]) -> None:
    rec = Recorder()
    base = ""
    never = asyncio.Event()  # set only when the test is over

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/slow":
            if rec.count("HEAD", "/slow") == 1:
                await never.wait()  # the first attempt gets no answer: only a timeout ends it
            raise web.HTTPFound(f"{base}/dandiset/000006")
        if request.path == "/server-info":
            return web.json_response(info_json(f"{base}/api", base))
        return web.Response()

    base = await serve(handler)
    try:
        parsed = await resolve_url(f"{base}/slow", retry=FAST, timeout=0.3)
    finally:
        never.set()
    assert parsed.dandiset_id == "000006"
    assert rec.count("HEAD", "/slow") == 2


class FlakyRawServer:
    """A bare TCP server: drops the first ``drops`` connections without a word, then answers.

    ``/x`` redirects to ``/dandiset/000001``; everything else is 200.
    """

    def __init__(self, drops: int):
        self.drops = drops
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FlakyRawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        if self.connections <= self.drops:
            writer.transport.abort()
            return
        path = head.split(b" ", 2)[1]
        status = b"302 Found\r\nLocation: /dandiset/000001" if path == b"/x" else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


async def test_retry_on_connection_error() -> None:
    async with FlakyRawServer(drops=2) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        register_instance(Instance("flaky", base, f"{base}/api"))
        try:
            parsed = await resolve_url(f"{base}/x", retry=FAST)
        finally:
            unregister_instance("flaky")
        assert parsed == ParsedURL(D, Instance("flaky", base, f"{base}/api"), "000001")
        assert srv.connections == 4  # 2 dropped + the redirect + the landing page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_refused_connection_fails_fast() -> None:
    """A host that refuses and never answered is not retried: one line, host and cause."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/short"
    t0 = time.monotonic()
    with pytest.raises(FailedToConnectError) as excinfo:
        await resolve_url(url, retry=RetryPolicy(attempts=5, base_delay=2))
    assert time.monotonic() - t0 < 1.5  # no back-off sleep happened
    assert str(excinfo.value) == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert isinstance(excinfo.value, ConnectError)


async def test_server_info_fallback_to_api_info(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """§10.2 row 13: /server-info 404 -> /api/info/; no webui -> gui None."""
    rec = Recorder()
    base = ""

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/api/info/":
            return web.json_response(info_json(f"{base}/api/", None))
        raise web.HTTPNotFound()

    base = await serve(handler)
    parsed = await resolve_url(f"{base}/api/dandisets/000123/", retry=FAST)
    port = base.rsplit(":", 1)[1]
    assert parsed == ParsedURL(D, Instance(f"127.0.0.1:{port}", None, f"{base}/api"), "000123")
    assert rec.seen == [("GET", "/server-info"), ("GET", "/api/info/")]


async def test_server_info_names_instance_after_api_host(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """§10.2 row 12: an unknown GUI host; the instance is named after its API host."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/server-info":
            return web.json_response(
                info_json("https://api.example.test/api", "https://example.test")
            )
        raise web.HTTPNotFound()

    base = await serve(handler)
    parsed = await resolve_url(f"{base}/#/dandiset/000123/draft/files?location=sub-1", retry=FAST)
    assert parsed == ParsedURL(
        F,
        Instance("api.example.test", "https://example.test", "https://api.example.test/api"),
        "000123",
        "draft",
        path="sub-1/",
    )


async def test_server_info_html_falls_back(serve: Callable[[Handler], Awaitable[str]]) -> None:
    """A single-page GUI answers /server-info with HTML and 200: try /api/info/ too."""
    base = ""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/api/info/":
            return web.json_response(info_json("http://[::1]:8123/api", None))
        return web.Response(text="<html></html>", content_type="text/html")

    base = await serve(handler)
    parsed = await resolve_url(f"{base}/dandiset/000001", retry=FAST)
    assert parsed.instance == Instance("[::1]:8123", None, "http://[::1]:8123/api")


async def test_server_info_unavailable(serve: Callable[[Handler], Awaitable[str]]) -> None:
    rec = Recorder()

    async def handler(request: web.Request) -> web.StreamResponse:
        rec(request)
        if request.path == "/api/info/":
            return web.Response(text="{not json")
        raise web.HTTPNotFound()

    base = await serve(handler)
    with pytest.raises(RuntimeError) as excinfo:
        await resolve_url(f"{base}/api/dandisets/000123", retry=FAST)
    assert str(excinfo.value) == (
        f"Could not retrieve server info from {base}/api, and client does not recognize URL"
    )
    # failures are not memoised
    with pytest.raises(RuntimeError):
        await resolve_url(f"{base}/api/dandisets/000123", retry=FAST)
    assert rec.count("GET", "/server-info") == 2


async def test_server_info_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}/dandiset/000001"
    with pytest.raises(RuntimeError, match=r"^Could not retrieve server info from http://127\."):
        await resolve_url(url, retry=FAST)


async def test_server_info_maps_to_known_instance(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """A mirror whose info names a known API is that known instance."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(info_json("https://api.sandbox.dandiarchive.org/api/", None))

    base = await serve(handler)
    parsed = await resolve_url(f"{base}/dandiset/000001", retry=FAST)
    assert parsed.instance == inst("dandi-sandbox")


class ThreadedInfoServer:
    """An http.server in a thread, for callers that block the event loop (parse_url)."""

    def __init__(self) -> None:
        outer = self
        self.hits = 0

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                port = self.server.server_address[1]
                body = json.dumps(info_json(f"http://127.0.0.1:{port}/api", None)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ThreadedInfoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def test_parse_url_with_network_inside_running_loop() -> None:
    with ThreadedInfoServer() as srv:
        base = f"http://127.0.0.1:{srv.port}"
        parsed = parse_url(f"{base}/api/dandisets/000007/versions/draft/assets/?glob=*.nwb")
        assert parsed == ParsedURL(
            G,
            Instance(f"127.0.0.1:{srv.port}", None, f"{base}/api"),
            "000007",
            "draft",
            path="*.nwb",
        )
        assert srv.hits == 1


async def test_borrowed_session_settings_do_not_leak(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """An API session's token never reaches a redirector; its raise_for_status is ignored."""
    auth_seen: list[str | None] = []
    hits = Counter[str]()
    base = ""

    async def handler(request: web.Request) -> web.StreamResponse:
        auth_seen.append(request.headers.get("Authorization"))
        hits[request.path] += 1
        if request.path == "/short":
            if hits["/short"] == 1:
                raise web.HTTPServiceUnavailable(headers={"Retry-After": "0"})
            raise web.HTTPFound(f"{base}/dandiset/000001")
        if request.path == "/server-info":
            return web.json_response(info_json(f"{base}/api", base))
        return web.Response()

    base = await serve(handler)
    async with aiohttp.ClientSession(
        headers={"Authorization": "token secret"}, raise_for_status=True
    ) as session:
        parsed = await resolve_url(f"{base}/short", session=session, retry=FAST)
        assert not session.closed
    assert parsed.dandiset_id == "000001"
    assert hits["/short"] == 2
    assert auth_seen and set(auth_seen) == {None}


async def test_borrowed_session_with_raise_for_status_sees_404(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    base = await serve(handler)
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        with pytest.raises(NotFoundError):
            await resolve_url(f"{base}/short", session=session, retry=FAST)
