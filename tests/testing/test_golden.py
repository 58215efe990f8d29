"""Every golden capture from a real Archive, replayed against the test archive: same shapes.

The archive is seeded with :func:`oracle_spec`, which mirrors the recorded dandisets, so the
same request must come back with the same status, the same keys, value types and nesting,
the same pagination fields, the same error bodies. Ids, dates and digests may differ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from dandiget.testing import TestArchive
from dandiget.testing.demo import TESTER_TOKEN

from .conftest import Resp, fetch

#: Recorded real-server responses, vendored from ``shared/golden`` (see its ``_README.md``).
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"

GOLDEN_API = "http://localhost:8000/api"
GOLDEN_ZARR = "aba29955-c886-4401-9dd1-a96f3b021d6c"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Documented deviations: (capture, JSON path) pairs allowed to be missing on our side.
ALLOWED_MISSING = {
    ("api_info", "$.services.webui"),  # the test archive has no web UI (dandi-cli: gui=None)
}


def _index() -> dict[str, dict[str, Any]]:
    # a missing capture is an error at collection, never a silent skip
    return json.loads((GOLDEN / "_index.json").read_text())


INDEX = _index()


def shape_diff(ours: Any, golden: Any, path: str = "$", name: str = "") -> list[str]:
    """Differences in keys, value types, nesting and list lengths (values are ignored)."""
    if isinstance(golden, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected object, got {type(ours).__name__}"]
        out = []
        for k in golden.keys() - ours.keys():
            if (name, f"{path}.{k}") not in ALLOWED_MISSING:
                out.append(f"{path}.{k}: missing")
        out += [f"{path}.{k}: unexpected" for k in ours.keys() - golden.keys()]
        for k in golden.keys() & ours.keys():
            out += shape_diff(ours[k], golden[k], f"{path}.{k}", name)
        return out
    if isinstance(golden, list):
        if not isinstance(ours, list):
            return [f"{path}: expected list, got {type(ours).__name__}"]
        if len(ours) != len(golden):
            return [f"{path}: {len(ours)} items, golden has {len(golden)}"]
        out = []
        for i, (o, g) in enumerate(zip(ours, golden, strict=True)):
            out += shape_diff(o, g, f"{path}[{i}]", name)
        return out
    if type(ours) is not type(golden):
        return [f"{path}: {type(ours).__name__} != golden {type(golden).__name__}"]
    return []


class Mapper:
    """Translates golden URLs (host, asset/zarr ids) into the test archive's."""

    def __init__(self, archive: TestArchive):
        self.archive = archive
        self.ids: dict[str, str] = {}
        listings = [
            ("000001", "draft", "api_dandisets_000001_versions_draft_assets__page_size_100.json"),
            ("000002", "0.261125.2202",
             "api_dandisets_000002_versions_0.261125.2202_assets__page_size_100.json"),
        ]
        for did, ver, fname in listings:
            for row in json.loads((GOLDEN / fname).read_text())["results"]:
                info = archive.asset(did, row["path"], ver)
                self.ids[row["asset_id"]] = info.asset_id
                if row["zarr"]:
                    self.ids[row["zarr"]] = info.zarr_id or ""
        assert self.ids[GOLDEN_ZARR]

    def url(self, golden_url: str) -> str:
        url = golden_url.replace(GOLDEN_API, self.archive.api_url)
        return UUID_RE.sub(lambda m: self.ids.get(m.group(0), m.group(0)), url)


@pytest.fixture(scope="module")
def mapper(oracle: TestArchive) -> Mapper:
    return Mapper(oracle)


def _auth(capture: dict[str, Any]) -> dict[str, str]:
    auth = capture.get("auth")
    if auth == "valid token":
        return {"Authorization": f"token {TESTER_TOKEN}"}
    if auth == "invalid token":
        return {"Authorization": "token " + "0" * 40}
    return {}


API_CAPTURES = sorted(k for k in INDEX if not k.startswith("s3_"))
S3_CAPTURES = sorted(k for k in INDEX if k.startswith("s3_"))


def test_every_capture_is_present() -> None:
    """The vendored set is complete: every capture the index names is here to replay."""
    assert len(API_CAPTURES) >= 60 and len(S3_CAPTURES) >= 5
    missing = [c["file"] for c in INDEX.values() if c.get("file")
               and not (GOLDEN / c["file"]).is_file()]
    assert missing == []


def _replay(mapper: Mapper, name: str) -> tuple[dict[str, Any], Resp]:
    cap = INDEX[name]
    return cap, fetch(mapper.url(cap["url"]), cap["method"], _auth(cap))


@pytest.mark.parametrize("name", API_CAPTURES)
def test_api_capture(mapper: Mapper, name: str) -> None:
    cap, r = _replay(mapper, name)
    assert r.status == cap["status"], r.body[:300]
    gh = cap.get("headers", {})
    for h in ("Content-Type", "Allow", "WWW-Authenticate"):
        if h in gh:
            assert r.headers.get(h) == gh[h], h
        else:
            assert h not in r.headers or h == "Allow", h
    if cap["method"] == "HEAD":
        assert r.body == b""
    elif cap.get("file"):
        golden = json.loads((GOLDEN / cap["file"]).read_text())
        ours = r.json()
        assert shape_diff(ours, golden, name=name) == []
        _check_pagination(ours, golden)
    elif "body_text" in cap:
        assert r.body.decode() == cap["body_text"]
    if "Location" in gh:
        _check_location(r.headers["Location"], gh["Location"])


def _check_pagination(ours: Any, golden: Any) -> None:
    if not (isinstance(golden, dict) and "results" in golden):
        return
    for k in ("count", "next", "previous"):
        if k in golden:
            assert (ours[k] is None) == (golden[k] is None), k
    for k in ("next", "previous"):
        if golden.get(k):
            g, o = urlsplit(golden[k]), urlsplit(ours[k])
            assert g.path.replace("/aba29955-c886-4401-9dd1-a96f3b021d6c/", "/Z/") == \
                re.sub(UUID_RE, "aba29955-c886-4401-9dd1-a96f3b021d6c", o.path).replace(
                    "/aba29955-c886-4401-9dd1-a96f3b021d6c/", "/Z/")
            assert [k2 for k2, _ in parse_qsl(o.query)] == [k2 for k2, _ in parse_qsl(g.query)]


def _check_location(ours: str, golden: str) -> None:
    o, g = urlsplit(ours), urlsplit(golden)
    # the golden bucket is path-style (/dandi-dandisets/...); ours is the host root
    gpath = g.path.removeprefix("/dandi-dandisets")
    def norm(p: str) -> str:
        return re.sub(r"/blobs/[0-9a-f]{3}/[0-9a-f]{3}/", "/blobs/X/Y/", re.sub(UUID_RE, "U", p))

    assert norm(o.path) == norm(gpath)
    okeys = [k for k, _ in parse_qsl(o.query)]
    gkeys = [k for k, _ in parse_qsl(g.query)]
    assert okeys == gkeys
    od, gd = dict(parse_qsl(o.query)), dict(parse_qsl(g.query))
    for k in ("response-content-disposition", "response-content-type", "X-Amz-Expires",
              "X-Amz-Algorithm", "X-Amz-SignedHeaders"):
        assert od.get(k) == gd.get(k), k


@pytest.mark.parametrize("name", S3_CAPTURES)
def test_bucket_capture(mapper: Mapper, name: str) -> None:
    cap = INDEX[name]
    source = re.fullmatch(r"<Location of (\w+)>", cap["url"])
    assert source is not None
    _, redirect = _replay(mapper, source.group(1))
    assert redirect.status == 302
    headers = {"Range": cap["request_range"]} if cap.get("request_range") else {}
    # The captures come from moto, which lets a HEAD through a URL presigned for GET; real S3
    # (and this archive by default) refuses it with 403: test_head_on_presigned_get_url.
    mapper.archive.signer.check_method = cap["method"] != "HEAD"
    try:
        r = fetch(redirect.headers["Location"], cap["method"], headers)
    finally:
        mapper.archive.signer.check_method = True
    assert r.status == cap["status"]
    gh = cap["headers"]
    assert set(gh) <= {k.title() if k.lower() != "etag" else "ETag" for k in r.headers}
    for h in ("Content-Type", "Content-Length", "Accept-Ranges", "Content-Range",
              "Content-Disposition"):
        if h in gh and not (h == "Content-Length" and cap["status"] >= 400):  # XML differs
            assert r.headers[h] == gh[h], h
    if "ETag" in gh:
        assert re.fullmatch(r'"[0-9a-f]{32}(-\d+)?"', r.headers["ETag"])
        assert gh["ETag"].endswith("-2\"") == r.headers["ETag"].endswith("-2\"")
    if cap["status"] >= 400:
        code = re.search(r"<Code>(\w+)</Code>", cap["body_text"])
        assert code and f"<Code>{code.group(1)}</Code>" in r.body.decode()
    elif cap["method"] == "GET" and cap.get("body_text", "").startswith("path with"):
        assert r.body.decode() == cap["body_text"]
