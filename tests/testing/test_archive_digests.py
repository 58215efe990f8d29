"""The test archive's own digests and glob, against the reference implementations.

The archive must not share the client's code for what it serves (``dandiget.digests``, the
client's glob): a shared mistake would make both agree. So the archive has its own code in
:mod:`dandiget.testing.archive_digests` and :mod:`dandiget.testing.queries`, checked here
against dandischema, zarr-checksum, the spec's examples and a checksum a real server made.
"""

from __future__ import annotations

import ast
import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import dandiget.testing
from dandiget.resolve.layout import _glob_regex
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, ZarrSpec
from dandiget.testing.archive_digests import (
    EMPTY_ZARR_CHECKSUM,
    PartHasher,
    dandi_etag,
    part_lengths,
    zarr_checksum,
)
from dandiget.testing.queries import glob_matches

from ..reference_impls import (
    S3_PART,
    boundary_sizes,
    golden_zarr,
    reference_etag,
    reference_layout,
    reference_summary,
    reference_zarr_checksum,
    tiny_layouts,
)
from .conftest import fetch

TESTING = Path(dandiget.testing.__file__).parent


def test_archive_imports_nothing_from_the_client_digests_or_glob() -> None:
    """Every module of the archive: no import of dandiget.digests or of the client's glob."""
    shared = []
    for py in sorted(TESTING.glob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = ("dandiget." if node.level else "") + node.module
                if mod.startswith(("dandiget.digests", "dandiget.resolve", "dandiget.zarr")):
                    shared.append(f"{py.name}: {mod}")
            elif isinstance(node, ast.Import):
                shared += [f"{py.name}: {a.name}" for a in node.names
                           if a.name.startswith(("dandiget.digests", "dandiget.resolve"))]
    assert shared == []


# ------------------------------------------------------------------ dandi-etag


def test_part_layout_at_every_boundary_matches_dandischema() -> None:
    bad = []
    n = 0
    for size in boundary_sizes():
        count, first, last = reference_summary(size)
        c, p, lst = part_lengths(size)
        if (c, p if c > 1 else size, lst) != (count, first, last):
            bad.append((size, (c, p, lst), (count, first, last)))
        n += 1
    assert n > 36_000 and bad[:5] == []


@settings(max_examples=300, deadline=None)
@given(tiny_layouts(), st.randoms(use_true_random=False),
       st.lists(st.integers(1, 500), max_size=10))
def test_etag_with_tiny_parts_matches_dandischema(layout: tuple[int, int, int],
                                                  rnd: random.Random, cuts: list[int]) -> None:
    size, part, limit = layout
    data = rnd.randbytes(size)
    event("part limit clause" if size and -(-size // part) >= limit else "plain part size")
    expected = reference_etag(data, part, limit)
    assert dandi_etag(data, part, limit) == expected
    h = PartHasher(size, part, limit)
    pos = 0
    for c in cuts:
        h.update(data[pos:pos + c])
        pos += c
    h.update(data[pos:])
    assert h.hexdigest() == expected
    count, psize, last = part_lengths(size, part, limit)
    layout_ = [(i * psize, psize) for i in range(count - 1)]
    if count:
        layout_.append(((count - 1) * psize, last))
    assert layout_ == reference_layout(size, part, limit)


def test_two_part_etag_matches_dandischema() -> None:
    data = random.Random(2).randbytes(S3_PART + 4321)
    assert dandi_etag(data) == reference_etag(data)


def test_served_digests_match_the_references(archive_factory) -> None:
    """What the archive announces and serves: dandi-etag of a two-part blob and of small
    ones, md5 ETags of Zarr entries, and the Zarr checksum, all by the references."""
    zarr = {"a/0": b"x" * 10, "a/1": b"", ".zattrs": b"{}", "b/c/d": b"deep"}
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        BlobSpec("big.bin", size=S3_PART + 99, seed=4), BlobSpec("s.txt", b"small\n"),
        ZarrSpec("z.zarr", zarr)])]))
    for path in ("big.bin", "s.txt"):
        info = archive.asset("000001", path)
        data = archive.read_blob("000001", path)
        assert info.digests["dandi:dandi-etag"] == reference_etag(data)
        head = fetch(info.content_url, "HEAD")
        assert head.headers["ETag"] == f'"{reference_etag(data)}"'
    z = archive.asset("000001", "z.zarr")
    listing = fetch(f"{archive.api_url}/zarr/{z.zarr_id}/files/").json()["results"]
    assert {r["Key"]: r["ETag"] for r in listing} == {
        k: hashlib.md5(v).hexdigest() for k, v in zarr.items()}
    files = [(k, hashlib.md5(v).hexdigest(), len(v)) for k, v in zarr.items()]
    assert z.digests["dandi:dandi-zarr-checksum"] == reference_zarr_checksum(files)


# ------------------------------------------------------------------ Zarr checksum


names = st.sampled_from(["a", "b", "A", "a.b", "a-b", "0", "1", "10", "2", ".zarray", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(names, min_size=1, max_size=5).map("/".join), unique=True,
                max_size=40), st.randoms(use_true_random=False))
def test_zarr_checksum_matches_zarr_checksum(keys: list[str], rnd: random.Random) -> None:
    keys = [k for k in keys if not any(m.startswith(k + "/") for m in keys)]
    files = [(k, hashlib.md5(k.encode()).hexdigest(), rnd.randrange(0, 10**9)) for k in keys]
    event("nested" if any("/" in k for k in keys) else "flat")
    rnd.shuffle(files)
    assert zarr_checksum(files) == reference_zarr_checksum(files)


def test_empty_zarr_checksum() -> None:
    assert zarr_checksum([]) == EMPTY_ZARR_CHECKSUM == reference_zarr_checksum([])


def test_recorded_server_zarr_checksum() -> None:
    files, checksum = golden_zarr()
    assert zarr_checksum(files) == checksum


# ------------------------------------------------------------------ glob


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    # archive-api.md §2.7: anchored, case-insensitive, only * is special and it crosses "/"
    ("*.nwb", "sub-01/sub-01_ses-1.nwb", True),
    ("*.NWB", "sub-01/x.nwb", True),
    ("sub-01/*", "sub-01/a/b/c.nwb", True),
    ("sub-01", "sub-01/x.nwb", False),
    ("*.nwb", "x.nwb.json", False),
    ("x?.nwb", "xa.nwb", False),
    ("x?.nwb", "x?.nwb", True),
    ("[ab].txt", "a.txt", False),
    ("[ab].txt", "[AB].txt", True),
    ("a.c", "abc", False),
    ("*a*a*", "aa", True),
    ("*a*a*", "a/b", False),
    ("**", "", True),
    ("", "", True),
    ("", "x", False),
])
def test_glob_follows_the_spec(pattern: str, path: str, matches: bool) -> None:
    assert glob_matches(pattern, path) is matches


chars = st.sampled_from(list("aAbB/.-_ ?[]éÉ\\"))


@st.composite
def glob_cases(draw: st.DrawFn) -> tuple[str, str]:
    """A path, and a pattern made from it: stretches replaced by ``*``, case flipped, and
    sometimes a character changed, so about half the cases match."""
    path = draw(st.text(chars, max_size=12))
    pattern = list(path)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(pattern)))
        j = draw(st.integers(i, min(len(pattern), i + 4)))
        pattern[i:j] = ["*"]
    pattern = [c.swapcase() if draw(st.booleans()) else c for c in pattern]
    if draw(st.integers(0, 2)) == 0:
        pattern.insert(draw(st.integers(0, len(pattern))), draw(chars))
    return "".join(pattern), path


@settings(max_examples=2000, deadline=None)
@given(glob_cases())
def test_glob_agrees_with_the_clients(case: tuple[str, str]) -> None:
    """Two independent implementations of the same rule (the client's is a regex)."""
    pattern, path = case
    ours = glob_matches(pattern, path)
    event("match" if ours else "no match")
    assert ours == (_glob_regex(pattern).fullmatch(path) is not None)
